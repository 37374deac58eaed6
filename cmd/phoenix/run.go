package main

import (
	"errors"

	"github.com/phoenix-hv/phoenix/playbooks"
	"github.com/phoenix-hv/phoenix/runner"
)

// RunFlags are the flags of every command that runs a playbook.
type RunFlags struct {
	DryRun           bool     `help:"Check every step and change nothing."`
	Diff             bool     `help:"Show the diff of each change."`
	DetailedExitcode bool     `help:"With --dry-run: exit 2 when changes are pending."`
	Forks            int      `help:"VMs worked on in parallel." default:"5"`
	FeatureDir       []string `help:"Directory with feature scripts NAME.sh, searched before the built-in ones (repeatable)." type:"existingdir" placeholder:"DIR"`
}

// BuildFlags are the flags of the commands that create VMs.
type BuildFlags struct {
	WithDeps        bool `name:"with-deps" help:"Also run the VMs' dependencies (clone sources such as their template, dependencies), first."`
	RebuildTemplate bool `name:"rebuild-template" help:"Rebuild a template whose image changed (template_image_sha256); refused while linked clones of it exist."`
}

// RunCmd runs any playbook.
type RunCmd struct {
	Playbook string `arg:"" help:"Built-in playbook (create, delete, start, stop) or a YAML file."`
	VMID     []int  `name:"vmid" help:"VM to run on (repeatable)." xor:"select" required:""`
	All      bool   `help:"Run on every VM of the config." xor:"select" required:""`
	RunFlags
	BuildFlags
}

func (c *RunCmd) Run(a *App) error {
	return a.runPlaybook(c.Playbook, c.VMID, c.All, c.RunFlags, c.BuildFlags)
}

// vmids is the positional VMID list of the built-in verbs.
type vmids struct {
	VMIDs []int `arg:"" name:"vmid" help:"VMs to work on."`
	RunFlags
}

type CreateCmd struct {
	vmids
	BuildFlags
}
type DeleteCmd struct{ vmids }
type StartCmd struct{ vmids }
type StopCmd struct{ vmids }

func (c *CreateCmd) Run(a *App) error {
	return a.runPlaybook("create", c.VMIDs, false, c.RunFlags, c.BuildFlags)
}
func (c *DeleteCmd) Run(a *App) error {
	return a.runPlaybook("delete", c.VMIDs, false, c.RunFlags, BuildFlags{})
}
func (c *StartCmd) Run(a *App) error {
	return a.runPlaybook("start", c.VMIDs, false, c.RunFlags, BuildFlags{})
}
func (c *StopCmd) Run(a *App) error {
	return a.runPlaybook("stop", c.VMIDs, false, c.RunFlags, BuildFlags{})
}

// PlanCmd is create with --dry-run --diff.
type PlanCmd struct {
	VMIDs            []int    `arg:"" name:"vmid" help:"VMs to plan."`
	DetailedExitcode bool     `help:"Exit 2 when changes are pending."`
	Forks            int      `help:"VMs checked in parallel." default:"5"`
	FeatureDir       []string `help:"Directory with feature scripts NAME.sh (repeatable)." type:"existingdir" placeholder:"DIR"`
	BuildFlags
}

func (c *PlanCmd) Run(a *App) error {
	return a.runPlaybook("create", c.VMIDs, false, RunFlags{
		DryRun: true, Diff: true, DetailedExitcode: c.DetailedExitcode, Forks: c.Forks, FeatureDir: c.FeatureDir,
	}, c.BuildFlags)
}

func (a *App) runPlaybook(name string, ids []int, all bool, f RunFlags, b BuildFlags) error {
	pb, err := playbooks.Load(name)
	if err != nil {
		return err
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	inv, err := a.loadInventory()
	if err != nil {
		return err
	}
	w := &wiring{inv: inv, hostKeys: a.HostKeys}
	obs, done := a.observer()
	sum, err := runner.Run(a.Ctx, runner.Options{
		Config: cfg, Inventory: inv, Playbook: pb, VMIDs: ids, All: all, WithDeps: b.WithDeps,
		Forks: f.Forks, DryRun: f.DryRun, Diff: f.Diff, RebuildTemplates: b.RebuildTemplate,
		Observer: obs, Registry: registry(),
		Connect: w.connectNode, GuestFor: w.guestFor,
		FeatureDirs: f.FeatureDir,
	})
	done()
	a.code = sum.ExitCode(f.DetailedExitcode)
	if sum.Interrupted {
		// Each stopped step is in the events; the last word is why.
		return reported{errors.New("interrupted")}
	}
	if err != nil && len(sum.VMs) > 0 {
		return reported{err}
	}
	return err
}
