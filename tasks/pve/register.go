// Package pve holds the Proxmox node side of phoenix: qm output parsers, the
// VM state read once per run, and the node tasks.
package pve

import (
	"fmt"

	"github.com/phoenix-hv/phoenix/tasks"
)

var (
	_ tasks.Task = (*cloneTask)(nil)
	_ tasks.Task = (*configTask)(nil)
	_ tasks.Task = (*diskTask)(nil)
	_ tasks.Task = (*startTask)(nil)
	_ tasks.Task = (*stopTask)(nil)
	_ tasks.Task = (*snapshotTask)(nil)
	_ tasks.Task = (*destroyTask)(nil)
	_ tasks.Task = (*imageTask)(nil)
	_ tasks.Task = (*createTask)(nil)
	_ tasks.Task = (*templateTask)(nil)
	_ tasks.Task = (*firewallTask)(nil)
	_ tasks.Task = (*placeTask)(nil)
)

// Register adds the node task kinds to reg.
func Register(reg tasks.Registry) { register(reg, qm{backoff: defaultBackoff()}) }

// register binds the tasks to q, so tests can retry without waiting.
func register(reg tasks.Registry, q qm) {
	reg["vm_clone"] = build(q, newClone)
	reg["vm_config"] = build(q, newConfig)
	reg["vm_disk"] = build(q, newDisk)
	reg["vm_start"] = build(q, newStart)
	reg["vm_stop"] = build(q, newStop)
	reg["vm_snapshot"] = build(q, newSnapshot)
	reg["vm_destroy"] = build(q, newDestroy)
	reg["vm_image"] = build(q, newImage)
	reg["vm_create"] = build(q, newCreate)
	reg["vm_template"] = build(q, newTemplate)
	reg["vm_firewall"] = build(q, newFirewall)
	reg["vm_place"] = build(q, newPlace)
}

// build decodes the playbook parameters into P and makes the task.
func build[P any](q qm, newTask func(qm, P) (tasks.Task, error)) tasks.Factory {
	return func(params map[string]any) (tasks.Task, error) {
		var p P
		if err := tasks.Decode(params, &p); err != nil {
			return nil, err
		}
		return newTask(q, p)
	}
}

// missing is the Check result for a VM that does not exist: in a dry run an
// earlier clone is still pending, so the outcome is not known yet; in a real
// run it is an error.
func missing(env *tasks.Env, summary string) (tasks.Change, error) {
	if env.DryRun {
		return tasks.Change{Action: tasks.Unknown, Summary: summary}, nil
	}
	return tasks.Change{}, fmt.Errorf("vm %d does not exist: phoenix makes a VM by cloning (clone_from_vmid) or a template from a cloud image (is_template with template_image)", env.VM.VMID)
}

// planned is a pending change that runs calls; will and did word it
// before and after (Change.Summary, Change.Done).
func planned(action tasks.Action, will, did, diff string, calls ...call) tasks.Change {
	return tasks.Change{Action: action, Summary: will, Done: did, Diff: diff, Commands: commands(calls), Plan: calls}
}

func none(format string, args ...any) tasks.Change {
	return tasks.Change{Action: tasks.None, Summary: fmt.Sprintf(format, args...)}
}

// warnOnce logs a warning once per VM and run, though Check runs again after
// Apply. Kept under a key the runner never forgets.
func warnOnce(env *tasks.Env, what, format string, args ...any) {
	_, _ = env.Cached("warned:"+what, func() (any, error) {
		env.Logf(format, args...)
		return true, nil
	})
}
