package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/phoenix-hv/phoenix/console"
	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/playbooks"
	"github.com/phoenix-hv/phoenix/runner"
	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/tasks/guest"
	"github.com/phoenix-hv/phoenix/tasks/pve"
)

// CLI is the command line: one struct per verb, each with Run(*App) error.
type CLI struct {
	Globals

	Run        RunCmd        `cmd:"" help:"Run a playbook (built-in name or YAML file) on VMs."`
	Create     CreateCmd     `cmd:"" help:"Create VMs from the config: clone, configure, start, mount shares, inject files, run features, snapshot."`
	Delete     DeleteCmd     `cmd:"" help:"Stop and destroy VMs with their disks, and forget their pinned host keys."`
	Start      StartCmd      `cmd:"" help:"Start VMs and wait for their guests."`
	Stop       StopCmd       `cmd:"" help:"Shut VMs down (a hard stop after a timeout)."`
	Plan       PlanCmd       `cmd:"" help:"Show what create would change, with diffs; changes nothing."`
	Status     StatusCmd     `cmd:"" help:"Show the config's VMs as their nodes see them; with --check, what create would change."`
	Render     RenderCmd     `cmd:"" help:"Print the task list a playbook turns into for one VM (secrets masked)."`
	Validate   ValidateCmd   `cmd:"" help:"Check the config (and the inventory, if present); print warnings."`
	Exec       ExecCmd       `cmd:"" help:"Run a command in a guest over the agent or SSH; exits with its code."`
	Version    VersionCmd    `cmd:"" help:"Print the version and the commit phoenix was built from."`
	Completion CompletionCmd `cmd:"" help:"Print the shell code for tab completion (commands, flags, the config's vmids, playbooks)."`
}

// Globals are the flags every command takes.
type Globals struct {
	Config    string `help:"VM config file." default:"./phoenix_vm_configs.json" env:"PHOENIX_CONFIG" placeholder:"FILE" predictor:"file"`
	Inventory string `help:"Inventory: Proxmox nodes and guest access." default:"./inventory.yml" env:"PHOENIX_INVENTORY" placeholder:"FILE" predictor:"file"`
	Output    string `help:"Output format: text or json (JSON Lines events)." enum:"text,json" default:"text"`
	Verbose   int    `short:"v" type:"counter" help:"More output: -v live output and details, -vv commands."`
	HostKeys  string `help:"Unknown node host keys: strict refuses them, accept-new pins them. Changed keys are always refused." enum:"strict,accept-new" default:"strict"`
	SSHConfig string `name:"ssh-config" help:"ssh_config file for node aliases." default:"~/.ssh/config" placeholder:"FILE" predictor:"file"`
	NoColor   bool   `name:"no-color" help:"No colours on a terminal (NO_COLOR set in the environment does the same)."`
}

// App is what every command runs with.
type App struct {
	Globals
	Ctx            context.Context
	Stdout, Stderr io.Writer
	// code is an exit code a command chose (2: pending changes; exec: the
	// remote command's code).
	code int
}

// exitCode is kong asking to exit (after --help).
type exitCode int

// Main runs phoenix with args and returns the process exit code: 0 success,
// 1 failure, 2 pending changes with --dry-run --detailed-exitcode, 130
// interrupted.
func Main(args []string, stdout, stderr io.Writer) int {
	return MainContext(context.Background(), args, stdout, stderr)
}

// MainContext is Main under ctx: the process cancels it on Ctrl-C (main.go).
func MainContext(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(exitCode)
			if !ok {
				panic(r)
			}
			code = int(c)
		}
	}()
	var cli CLI
	parser, err := newParser(&cli, stdout, stderr, func(c int) { panic(exitCode(c)) })
	if err != nil {
		fmt.Fprintf(stderr, "phoenix: %v\n", err)
		return 1
	}
	completeIfAsked(parser)
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "phoenix: %v (see phoenix --help)\n", err)
		return 1
	}
	app := &App{Globals: cli.Globals, Ctx: ctx, Stdout: stdout, Stderr: stderr}
	app.SSHConfig = expandHome(app.SSHConfig)
	if err := kctx.Run(app); err != nil {
		app.fail(err)
		if ctx.Err() != nil {
			return 130 // interrupted, whatever the verb
		}
		return max(app.code, 1)
	}
	return app.code
}

func newParser(cli *CLI, stdout, stderr io.Writer, exit func(int)) (*kong.Kong, error) {
	return kong.New(cli,
		kong.Name("phoenix"),
		kong.Description("phoenix provisions QEMU VMs on Proxmox VE from phoenix_vm_configs.json, agentless over SSH.\n\n"+
			"Examples:\n  phoenix plan 8101\n  phoenix create 8101\n  phoenix status --check\n\nEach command's --help has more."),
		kong.Writers(stdout, stderr),
		kong.Exit(exit),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
	)
}

// reported is a run's failure that its events already carry (task_end,
// vm_end): JSON mode does not repeat it after the summary, which stays the
// last line.
type reported struct{ error }

func (r reported) Unwrap() error { return r.error }

// fail prints err once on stderr; in JSON mode also as an event, unless the
// events said it already.
func (a *App) fail(err error) {
	var rep reported
	if a.Output == "json" && !errors.As(err, &rep) {
		runner.JSONLines{W: a.Stdout}.OnEvent(runner.Event{Type: runner.EventError, Error: err.Error()})
	}
	fmt.Fprintf(a.Stderr, "phoenix: %v\n", err)
}

func (a *App) loadConfig() (*inventory.Config, error) {
	cfg, err := inventory.LoadConfig(a.Config)
	if err != nil {
		return nil, err
	}
	if a.Verbose > 0 {
		for _, w := range cfg.Warnings {
			fmt.Fprintf(a.Stderr, "warning: %s\n", w)
		}
	}
	return cfg, nil
}

func (a *App) loadInventory() (*inventory.Inventory, error) {
	return inventory.LoadInventory(a.Inventory, a.SSHConfig)
}

// observer is how a run is shown: JSON Lines with --output json, the live
// view on a terminal, plain lines otherwise. done ends the live view.
func (a *App) observer() (o runner.Observer, done func()) {
	if a.Output == "json" {
		return runner.JSONLines{W: a.Stdout}, func() {}
	}
	if t, ok := console.Detect(a.Stdout, console.OSEnviron{}, a.NoColor); ok {
		l := console.NewLive(t, console.Options{Verbose: a.Verbose})
		return l, l.Close
	}
	return &runner.Text{W: a.Stdout, Verbose: a.Verbose}, func() {}
}

// registry holds every task kind phoenix knows.
func registry() tasks.Registry {
	reg := tasks.Registry{}
	pve.Register(reg)
	guest.Register(reg, playbooks.Feature)
	return reg
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}

// loadVM loads the config and returns its VM vmid.
func (a *App) loadVM(vmid int) (*inventory.VM, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	vm := cfg.Lookup(vmid)
	if vm == nil {
		return nil, fmt.Errorf("%s: vm %d is not defined", cfg.File, vmid)
	}
	return vm, nil
}
