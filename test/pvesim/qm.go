package pvesim

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// kind tells how qm runs a command (reference §1.2).
type kind int

const (
	direct     kind = iota // errors on stderr, non-zero exit
	worker                 // progress on stdout, failure as one stderr line, exit 255
	workerExit             // worker without exit-status hook: exit 0 even on failure (resize, template)
)

type qmCommand struct {
	command
	kind kind
	run  func(c *call, p *params) error
}

func vmidArg() prop { return vmidProp("vmid") }

// qmCommands is the command table of the simulated qm.
func qmCommands() []*qmCommand {
	cmd := func(path string, k kind, args []string, props []prop, run func(*call, *params) error) *qmCommand {
		usage := "qm " + path
		for _, a := range args {
			if a == "extra-args" {
				usage += " [<extra-args>]"
				continue
			}
			usage += " <" + a + ">"
		}
		hasOpts := false
		for _, pr := range props {
			isArg := false
			for _, a := range args {
				isArg = isArg || a == pr.name
			}
			hasOpts = hasOpts || !isArg
		}
		if hasOpts {
			usage += " [OPTIONS]"
		}
		return &qmCommand{command: command{path: path, args: args, props: props, usage: usage}, kind: k, run: run}
	}
	vm := []string{"vmid"}
	skiplock := boolProp("skiplock")
	createProps := append(configProps(), vmidArg(), strProp("archive"), strProp("storage"), boolProp("start"),
		strProp("pool"), boolProp("unique"), boolProp("force"), boolProp("live-restore"), intProp("bwlimit", 0))
	setProps := append(configProps(), vmidArg(), prop{name: "delete", list: true}, prop{name: "revert", list: true},
		prop{name: "digest", maxLen: 64}, skiplock, boolProp("force"))
	resizeProps := []prop{vmidArg(), {name: "disk", format: formatDriveName}, {name: "size", format: formatDiskSize}, skiplock, prop{name: "digest", maxLen: 64}}
	return []*qmCommand{
		cmd("list", direct, nil, []prop{boolProp("full")}, (*call).qmList),
		cmd("status", direct, vm, []prop{vmidArg(), boolProp("verbose")}, (*call).qmStatus),
		cmd("config", direct, vm, []prop{vmidArg(), boolProp("current"), {name: "snapshot", format: formatConfigID, maxLen: 40}}, (*call).qmConfig),
		cmd("pending", direct, vm, []prop{vmidArg()}, (*call).qmPending),
		cmd("create", worker, vm, createProps, (*call).qmCreate),
		cmd("clone", worker, []string{"vmid", "newid"}, []prop{vmidArg(), vmidProp("newid"), {name: "name", format: formatDNSName},
			boolProp("full"), strProp("storage"), {name: "format", enum: []string{"raw", "qcow2", "vmdk"}}, strProp("target"),
			{name: "snapname", format: formatConfigID, maxLen: 40}, {name: "description", maxLen: 8192}, strProp("pool"), intProp("bwlimit", 0)}, (*call).qmClone),
		cmd("set", direct, vm, setProps, (*call).qmSet),
		cmd("disk resize", workerExit, []string{"vmid", "disk", "size"}, resizeProps, (*call).qmResize),
		cmd("disk import", direct, []string{"vmid", "source", "storage"}, []prop{vmidArg(), strProp("source"), strProp("storage"),
			{name: "format", enum: []string{"raw", "qcow2", "vmdk"}}, strProp("target-disk")}, (*call).qmImportDisk),
		cmd("start", worker, vm, []prop{vmidArg(), intProp("timeout", 0), skiplock, strProp("machine"), strProp("migratedfrom")}, (*call).qmStart),
		cmd("stop", worker, vm, []prop{vmidArg(), intProp("timeout", 0), skiplock, boolProp("keepActive"), boolProp("overrule-shutdown")}, (*call).qmStop),
		cmd("shutdown", worker, vm, []prop{vmidArg(), intProp("timeout", 0), boolProp("forceStop"), skiplock, boolProp("keepActive")}, (*call).qmShutdown),
		cmd("reboot", worker, vm, []prop{vmidArg(), intProp("timeout", 0)}, (*call).qmReboot),
		cmd("wait", direct, vm, []prop{vmidArg(), intProp("timeout", 1)}, (*call).qmWait),
		cmd("destroy", worker, vm, []prop{vmidArg(), boolProp("purge"), boolProp("destroy-unreferenced-disks"), skiplock}, (*call).qmDestroy),
		cmd("snapshot", worker, []string{"vmid", "snapname"}, []prop{vmidArg(), snapnameProp(), {name: "description"}, boolProp("vmstate")}, (*call).qmSnapshot),
		cmd("listsnapshot", direct, vm, []prop{vmidArg()}, (*call).qmListSnapshot),
		cmd("delsnapshot", worker, []string{"vmid", "snapname"}, []prop{vmidArg(), snapnameProp(), boolProp("force")}, (*call).qmDelSnapshot),
		cmd("rollback", worker, []string{"vmid", "snapname"}, []prop{vmidArg(), snapnameProp(), boolProp("start")}, (*call).qmRollback),
		cmd("migrate", worker, []string{"vmid", "target"}, []prop{vmidArg(), strProp("target"), boolProp("online"), boolProp("with-local-disks"),
			strProp("targetstorage"), boolProp("force"), intProp("bwlimit", 0), {name: "migration_type", enum: []string{"secure", "insecure"}},
			strProp("migration_network")}, (*call).qmMigrate),
		cmd("template", workerExit, vm, []prop{vmidArg(), {name: "disk", format: formatDriveName}}, (*call).qmTemplate),
		cmd("unlock", direct, vm, []prop{vmidArg()}, (*call).qmUnlock),
		cmd("cloudinit dump", direct, []string{"vmid", "type"}, []prop{vmidArg(), {name: "type", enum: []string{"user", "network", "meta"}}}, (*call).qmCloudinitDump),
		cmd("cloudinit update", direct, vm, []prop{vmidArg()}, (*call).qmCloudinitUpdate),
		cmd("guest cmd", direct, []string{"vmid", "command"}, []prop{vmidArg(), {name: "command", enum: agentCommands}}, (*call).qmGuestCmd),
		cmd("guest exec", direct, []string{"vmid", "extra-args"}, []prop{vmidArg(), boolProp("synchronous"), intProp("timeout", 0), boolProp("pass-stdin")}, (*call).qmGuestExec),
		cmd("guest exec-status", direct, []string{"vmid", "pid"}, []prop{vmidArg(), {name: "pid", typ: tInt}}, (*call).qmGuestExecStatus),
	}
}

// qmAliases are the old command names qm still accepts.
var qmAliases = map[string]string{
	"agent": "guest cmd", "resize": "disk resize", "importdisk": "disk import",
}

func formatDriveName(v string) string {
	if !driveKeyRE.MatchString(v) {
		return fmt.Sprintf("value '%s' does not have a value in the enumeration", v)
	}
	return ""
}

// qm resolves the (sub)command like CLIHandler's resolve_cmd: exact names,
// aliases and unique prefixes, one level of group.
func (c *call) qm(args []string) int {
	cmds := qmCommands()
	if len(args) == 0 {
		c.usage("no command specified", cmds)
		return exitFail
	}
	first := expandName(args[0], topNames(cmds))
	if alias, ok := qmAliases[first]; ok {
		args = append(strings.Fields(alias), args[1:]...)
		first = args[0]
	}
	name, rest := first, args[1:]
	if subs := subNames(cmds, first); len(subs) > 0 {
		if len(rest) == 0 {
			c.usage("incomplete command 'qm "+first+"'", cmds)
			return exitFail
		}
		name = first + " " + expandName(rest[0], subs)
		rest = rest[1:]
	}
	for _, qc := range cmds {
		if qc.path == name {
			return c.runQM(qc, rest)
		}
	}
	c.usage("unknown command 'qm "+name+"'", cmds)
	return exitFail
}

func topNames(cmds []*qmCommand) []string {
	seen := map[string]bool{}
	var out []string
	for _, qc := range cmds {
		top, _, _ := strings.Cut(qc.path, " ")
		if !seen[top] {
			seen[top] = true
			out = append(out, top)
		}
	}
	return out
}

func subNames(cmds []*qmCommand, group string) []string {
	var out []string
	for _, qc := range cmds {
		if g, sub, ok := strings.Cut(qc.path, " "); ok && g == group {
			out = append(out, sub)
		}
	}
	return out
}

// expandName completes a unique prefix; anything else is returned as is.
func expandName(arg string, names []string) string {
	var hits []string
	for _, n := range names {
		if n == arg {
			return n
		}
		if strings.HasPrefix(n, arg) {
			hits = append(hits, n)
		}
	}
	if len(hits) == 1 {
		return hits[0]
	}
	return arg
}

// usage is CLIHandler's print_usage_short on stderr.
func (c *call) usage(msg string, cmds []*qmCommand) {
	fmt.Fprintf(c.stderr, "ERROR: %s\n", msg)
	fmt.Fprint(c.stderr, "USAGE: qm <COMMAND> [ARGS] [OPTIONS]\n\n")
	lines := make([]string, 0, len(cmds))
	for _, qc := range cmds {
		lines = append(lines, "       "+qc.usage)
	}
	sort.Strings(lines)
	fmt.Fprintln(c.stderr, strings.Join(lines, "\n"))
}

// progress is where lock waits and task output go: a worker's merged
// task log is qm's stdout; a direct command warns on stderr.
func (c *call) progress() io.Writer {
	if c.kind == direct {
		return c.stderr
	}
	return c.stdout
}

func (c *call) runQM(qc *qmCommand, args []string) int {
	p, err := qc.parse(args, c.stderr)
	if err != nil {
		return report(c.stderr, err)
	}
	c.kind = qc.kind
	err = qc.run(c, p)
	var pe *paramError
	if errors.As(err, &pe) && pe.usage == "" {
		pe.usage = qc.usage
	}
	var pf *preFork
	if err == nil || pe != nil || qc.kind == direct || errors.As(err, &pf) {
		return report(c.stderr, err)
	}
	// A failed worker task: one folded line on stderr.
	code := report(c.stderr, &taskError{err: err})
	if qc.kind == workerExit {
		return exitOK
	}
	return code
}

// vmid returns the parsed VM id parameter.
func vmidOf(p *params, name string) int {
	n, _ := strconv.Atoi(p.get(name))
	return n
}
