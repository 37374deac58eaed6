package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/posener/complete"
	"github.com/willabides/kongplete"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/playbooks"
)

// CompletionCmd prints the shell code that makes the shell ask phoenix for
// completions. The shell then runs phoenix with COMP_LINE set (the
// protocol of posener/complete, which kongplete speaks for kong), and
// phoenix answers from its own command line model: commands, flags, the
// config's vmids, playbook names.
type CompletionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"bash, zsh or fish."`
}

// completionScripts register this binary as the shell's completer for
// "phoenix"; %[1]s is the binary's absolute path.
var completionScripts = map[string]string{
	"bash": "complete -o default -C %[1]q phoenix\n",
	"zsh":  "autoload -U +X bashcompinit && bashcompinit\ncomplete -o default -C %[1]q phoenix\n",
	"fish": `function __complete_phoenix
    set -lx COMP_LINE (commandline -cp)
    test -z (commandline -ct)
    and set COMP_LINE "$COMP_LINE "
    %[1]q
end
complete -f -c phoenix -a "(__complete_phoenix)"
`,
}

func (c *CompletionCmd) Run(a *App) error {
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("completion: where is phoenix? %w", err)
	}
	_, err = fmt.Fprintf(a.Stdout, completionScripts[c.Shell], bin)
	return err
}

// completeIfAsked answers a shell's completion request (COMP_LINE set) and
// exits through the parser; without one it returns and phoenix runs.
func completeIfAsked(parser *kong.Kong) {
	kongplete.Complete(parser,
		kongplete.WithPredictor("vmid", complete.PredictFunc(predictVMIDs)),
		kongplete.WithPredictor("playbook", complete.PredictOr(
			complete.PredictSet(playbooks.Builtins()...), complete.PredictFiles("*.y*ml"))),
		kongplete.WithPredictor("file", complete.PredictFiles("*")),
		kongplete.WithPredictor("dir", complete.PredictDirs("*")),
	)
}

// predictVMIDs lists the vmids of the config the command line names
// (--config, else PHOENIX_CONFIG, else the default); none when it does not
// load. It reads the whole line: the arguments it is given start after the
// verb, and --config may come before it.
func predictVMIDs(complete.Args) []string {
	file := cmp.Or(os.Getenv("PHOENIX_CONFIG"), "./phoenix_vm_configs.json")
	words := strings.Fields(os.Getenv("COMP_LINE"))
	for i, w := range words {
		if v, ok := strings.CutPrefix(w, "--config="); ok {
			file = v
		} else if w == "--config" && i+1 < len(words) {
			file = words[i+1]
		}
	}
	cfg, err := inventory.LoadConfig(expandHome(filepath.Clean(file)))
	if err != nil {
		return nil
	}
	ids := make([]string, len(cfg.VMs))
	for i, vm := range cfg.VMs {
		ids[i] = strconv.Itoa(vm.VMID)
	}
	return ids
}
