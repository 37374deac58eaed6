package guest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
)

// templatePrep is guest_template_prep: before qm template, the guest loses
// what must differ between its clones, as the original did before
// templating (pve-more.md §1.6): cloud-init's instance state and logs, so
// each clone runs cloud-init as a new instance; the machine-id, which
// systemd makes anew when it is empty (clones sharing one get one DHCP
// lease); and the SSH host keys, which cloud-init makes anew per instance
// (clones sharing them could impersonate each other). phoenix's pin of the
// template's host key goes in the playbook's next steps.
type templatePrep struct{ d deps }

func newTemplatePrep(d deps, params map[string]any) (tasks.Task, error) {
	var none struct{}
	if err := tasks.Decode(params, &none); err != nil {
		return nil, err
	}
	return &templatePrep{d: d}, nil
}

const machineID, dbusMachineID = "/etc/machine-id", "/var/lib/dbus/machine-id"

// prepProbe prints what is left to clean, one path a line: cloud-init's
// state and logs, the SSH host keys, a machine-id that is not empty, and
// D-Bus's own copy of it unless that is a link to /etc/machine-id.
var prepProbe = `for p in /var/lib/cloud/instance /var/lib/cloud/instances /var/log/cloud-init.log /var/log/cloud-init-output.log /etc/ssh/ssh_host_*; do ` +
	`if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi; done; ` +
	`if [ -s ` + machineID + ` ]; then echo ` + machineID + `; fi; ` +
	`if [ -f ` + dbusMachineID + ` ] && [ ! -L ` + dbusMachineID + ` ]; then echo ` + dbusMachineID + `; fi`

// prepScript cleans it all. cloud-init clean keeps the seed (the NoCloud
// drive's data); without cloud-init its state is removed by hand.
var prepScript = "set -e; " +
	`if command -v cloud-init >/dev/null 2>&1; then cloud-init clean --logs; else rm -rf /var/lib/cloud/instance /var/lib/cloud/instances; fi; ` +
	`rm -f /var/log/cloud-init.log /var/log/cloud-init-output.log /etc/ssh/ssh_host_*; ` +
	`if [ -e ` + machineID + ` ]; then : > ` + machineID + `; fi; ` +
	`if [ -f ` + dbusMachineID + ` ] && [ ! -L ` + dbusMachineID + ` ]; then rm -f ` + dbusMachineID + `; fi; sync`

var prepLine = transport.Command("sh", "-c", prepScript)

const prepTimeout = 5 * time.Minute

func (t *templatePrep) GuestProbes(*tasks.Env) []string { return []string{prepProbe} }

type prepPlan struct{}

func (t *templatePrep) Check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	up, err := t.d.guestUp(ctx, env)
	if err != nil {
		return tasks.Change{}, err
	}
	if !up {
		return notYet("will clean the guest for templating: cloud-init's instance state, the machine-id, the SSH host keys",
			"cleaned the guest for templating"), nil
	}
	return t.check(ctx, env)
}

func (t *templatePrep) check(ctx context.Context, env *tasks.Env) (tasks.Change, error) {
	res, err := env.GuestProbe(ctx, prepProbe)
	if err != nil {
		return tasks.Change{}, err
	}
	if res.ExitCode != 0 {
		return tasks.Change{}, fmt.Errorf("look for instance state in the guest: exit %d: %s", res.ExitCode, transport.Tail(res.Stderr, 3))
	}
	left := strings.Fields(string(res.Stdout))
	if len(left) == 0 {
		return tasks.Change{Action: tasks.None, Summary: "the guest holds no cloud-init instance state, machine-id or SSH host keys"}, nil
	}
	what := prepWords(left)
	var diff strings.Builder
	for _, p := range left {
		fmt.Fprintf(&diff, "- %s\n", p)
	}
	return tasks.Change{
		Action:   tasks.Delete,
		Summary:  "will clean the guest for templating: " + what,
		Done:     "cleaned the guest for templating: " + what,
		Diff:     diff.String(),
		Commands: []string{prepLine},
		Plan:     &prepPlan{},
	}, nil
}

// prepWords names what is left, for a person.
func prepWords(left []string) string {
	var cloud, ids, keys int
	for _, p := range left {
		switch {
		case strings.HasPrefix(p, "/etc/ssh/"):
			keys++
		case p == machineID || p == dbusMachineID:
			ids++
		default:
			cloud++
		}
	}
	var out []string
	if cloud > 0 {
		out = append(out, "cloud-init's instance state and logs")
	}
	if ids > 0 {
		out = append(out, "the machine-id")
	}
	if keys > 0 {
		out = append(out, fmt.Sprintf("%d SSH host key files", keys))
	}
	return strings.Join(out, ", ")
}

func (t *templatePrep) Apply(ctx context.Context, env *tasks.Env, c tasks.Change) error {
	p, g, err := planned[prepPlan](ctx, env, c, t.check)
	if p == nil {
		return err
	}
	if _, err := g.Run(ctx, transport.Cmd{Line: prepLine, Timeout: prepTimeout}); err != nil {
		return fmt.Errorf("clean the guest: %w", err)
	}
	return nil
}
