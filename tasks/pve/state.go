package pve

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/qga"
)

// State is what the node says about one VM, read once per run.
type State struct {
	VMID      int
	Exists    bool
	Status    string            // "running", "stopped", … ("" when missing)
	Config    map[string]string // qm config, pending applied
	Snapshots []string          // exact names, without "current"
	// PasswordHash is the stored cipassword, when it was read from the
	// config file (qm config masks it); "" otherwise.
	PasswordHash string
}

// Template reports whether the VM is a template.
func (s *State) Template() bool { return Config(s.Config).Template() }

// HasSnapshot reports whether a snapshot of exactly this name exists.
func (s *State) HasSnapshot(name string) bool { return slices.Contains(s.Snapshots, name) }

// ReadState returns the VM's state, read with one batched round trip and
// cached in env until the runner forgets it after a change.
func ReadState(ctx context.Context, env *tasks.Env) (*State, error) {
	return ReadStateOf(ctx, env, env.VM.VMID)
}

// ReadStateOf is ReadState for any VM of the node, such as a clone source.
func ReadStateOf(ctx context.Context, env *tasks.Env, vmid int) (*State, error) {
	v, err := env.Cached("pve:state:"+strconv.Itoa(vmid), func() (any, error) {
		return readState(ctx, env.Node, vmid)
	})
	if err != nil {
		return nil, err
	}
	return v.(*State), nil
}

// A VM's state is read from the node's files as Proxmox itself reads them,
// without starting qm (a Perl start-up of a good fraction of a second on a
// node; pve-more.md §4): its config file, and whether it runs from its pid
// file and /proc (vm_running_locally). qm stays the only writer, and the
// reader when the files cannot be read (no /etc/pve: pmxcfs is not
// mounted; not root).

// pidFile is where Proxmox keeps a running VM's pid.
func pidFile(vmid int) string { return qga.RunDir + "/" + strconv.Itoa(vmid) + ".pid" }

// noConfig is the exit status of fileLines' config read for a VM whose
// config is not on this node.
const noConfig = 4

// qmpStatus asks QEMU's monitor socket (argument 1) for the run state, as
// qm status does (query-status after the capabilities handshake), giving up
// after 3 s like qm; it prints the status ("running", "paused", …) or
// nothing. Only perl-base modules: every Proxmox node has them.
const qmpStatus = `use Socket; alarm 3; socket(S, PF_UNIX, SOCK_STREAM, 0) && connect(S, pack_sockaddr_un($ARGV[0])) or exit;
select((select(S), $| = 1)[0]); <S>; print S qq({"execute":"qmp_capabilities"}\n);
while (<S>) { last if /"return"/ } print S qq({"execute":"query-status"}\n);
while (<S>) { if (/"status"\s*:\s*"([a-z-]+)"/) { print "$1\n"; exit } }`

// fileLines are the reads of a VM's state from the node's files, run at
// the same time in one round trip.
func fileLines(vmid int) []string {
	conf := strconv.Itoa(vmid) + ".conf"
	pidfile := pidFile(vmid)
	qmp := qga.RunDir + "/" + strconv.Itoa(vmid) + ".qmp"
	return []string{
		// /etc/pve/qemu-server is the local node's directory (a symlink
		// pmxcfs makes), as qm config reads it.
		"cd /etc/pve/qemu-server && { [ -e " + conf + " ] || exit " + strconv.Itoa(noConfig) + "; cat " + conf + "; }",
		// The pid file's first line must be a number; then the process's
		// stat line and its arguments, one a line.
		"p=$(head -n 1 " + pidfile + ") && case $p in ''|*[!0-9]*) exit 1;; esac && " +
			"cat /proc/$p/stat && tr '\\000' '\\n' </proc/$p/cmdline",
		// A running VM is "running" or "paused", … only QMP can tell.
		"[ -S " + qmp + " ] && " + transport.Command("perl", "-e", qmpStatus, qmp),
	}
}

// stateLines are the three reads of a VM's state through qm, run at the
// same time in one round trip: three qm start-ups cost one.
func stateLines(vmid int) []string {
	id := strconv.Itoa(vmid)
	return []string{
		transport.Command("qm", "config", id),
		transport.Command("qm", "status", id),
		transport.Command("qm", "listsnapshot", id),
	}
}

func readState(ctx context.Context, node transport.Runner, vmid int) (*State, error) {
	ctx, cancel := context.WithTimeout(ctx, tasks.ProbeTimeout)
	defer cancel()
	st, ok, err := ReadStateFiles(ctx, node, vmid)
	if err != nil || ok {
		return st, err
	}
	return ReadStateQM(ctx, node, vmid)
}

// ReadStateFiles reads the VM's state from the node's files in one round
// trip; ok is false when its config cannot be read that way.
func ReadStateFiles(ctx context.Context, node transport.Runner, vmid int) (st *State, ok bool, err error) {
	res, err := transport.BatchParallel(ctx, node, fileLines(vmid))
	if err != nil {
		return nil, false, fmt.Errorf("read state of vm %d: %w", vmid, err)
	}
	st, ok = stateFromFiles(vmid, res)
	return st, ok, nil
}

// ReadStateQM reads the VM's state with qm config, status and listsnapshot,
// at the same time in one round trip.
func ReadStateQM(ctx context.Context, node transport.Runner, vmid int) (*State, error) {
	lines := stateLines(vmid)
	res, err := transport.BatchParallel(ctx, node, lines)
	if err != nil {
		return nil, fmt.Errorf("read state of vm %d: %w", vmid, err)
	}
	return parseState(vmid, lines, res)
}

// ReadStates reads the state of several VMs of one node in one round trip
// (phoenix status), and those whose files could not be read in one more
// through qm. A VM whose state cannot be read has its error in errs.
func ReadStates(ctx context.Context, node transport.Runner, vmids []int) (states map[int]*State, errs map[int]error, err error) {
	ctx, cancel := context.WithTimeout(ctx, tasks.ProbeTimeout)
	defer cancel()
	var lines []string
	for _, id := range vmids {
		lines = append(lines, fileLines(id)...)
	}
	res, err := transport.Batch(ctx, node, lines)
	if err != nil {
		return nil, nil, fmt.Errorf("read the state of vm %v: %w", vmids, err)
	}
	states, errs = map[int]*State{}, map[int]error{}
	var rest []int
	n := len(fileLines(0))
	for i, id := range vmids {
		if st, ok := stateFromFiles(id, res[n*i:n*(i+1)]); ok {
			states[id] = st
		} else {
			rest = append(rest, id)
		}
	}
	if len(rest) == 0 {
		return states, errs, nil
	}
	lines = nil
	for _, id := range rest {
		lines = append(lines, stateLines(id)...)
	}
	if res, err = transport.Batch(ctx, node, lines); err != nil {
		return nil, nil, fmt.Errorf("read the state of vm %v: %w", rest, err)
	}
	m := len(stateLines(0))
	for i, id := range rest {
		if st, err := parseState(id, lines[m*i:m*(i+1)], res[m*i:m*(i+1)]); err != nil {
			errs[id] = err
		} else {
			states[id] = st
		}
	}
	return states, errs, nil
}

// stateFromFiles reads the results of fileLines(vmid); false when the
// config could not be read and qm has to be asked.
func stateFromFiles(vmid int, res []transport.Result) (*State, bool) {
	st := &State{VMID: vmid}
	switch res[0].ExitCode {
	case noConfig:
		return st, true
	case 0:
	default:
		return nil, false
	}
	f := ParseConfigFile(res[0].Stdout)
	st.Exists, st.Config, st.Snapshots, st.PasswordHash = true, f.Shown(), f.SnapshotNames(), f.PasswordHash()
	st.Status = "stopped"
	if res[1].ExitCode == 0 && runsAs(res[1].Stdout, pidFile(vmid)) {
		// qm status says "running" too when QMP does not answer.
		st.Status = "running"
		if q := strings.TrimSpace(string(res[2].Stdout)); res[2].ExitCode == 0 && q != "" && !strings.ContainsAny(q, " \n") {
			st.Status = q
		}
	}
	return st, true
}

// runsAs is PVE's check of a VM's process (vm_running_locally) on the
// second of fileLines: a process that is not a zombie, whose program is kvm
// or a qemu-system-*, started with -pidfile pidfile.
func runsAs(out []byte, pidfile string) bool {
	stat, rest, _ := strings.Cut(string(out), "\n")
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return false
	}
	if f := strings.Fields(stat[i+1:]); len(f) == 0 || f[0] == "Z" {
		return false
	}
	argv := strings.Split(strings.TrimSuffix(rest, "\n"), "\n")
	prog := argv[0][strings.LastIndexByte(argv[0], '/')+1:]
	if !strings.HasSuffix(argv[0], "kvm") && !strings.HasPrefix(prog, "qemu-system-") {
		return false
	}
	for j := 1; j+1 < len(argv); j++ {
		if argv[j] == "-pidfile" && argv[j+1] == pidfile {
			return true
		}
	}
	return false
}

// parseState reads the results of stateLines(vmid).
func parseState(vmid int, lines []string, res []transport.Result) (*State, error) {
	st := &State{VMID: vmid}
	if err := res[0].Err(lines[0]); err != nil {
		if IsNotExist(err) {
			return st, nil
		}
		return nil, fmt.Errorf("read state of vm %d: %w", vmid, err)
	}
	for i, r := range res[1:] {
		if err := r.Err(lines[i+1]); err != nil {
			return nil, fmt.Errorf("read state of vm %d: %w", vmid, err)
		}
	}
	cfg, err := ParseConfig(res[0].Stdout)
	if err != nil {
		return nil, fmt.Errorf("read state of vm %d: %w", vmid, err)
	}
	if st.Status, err = ParseStatus(res[1].Stdout); err != nil {
		return nil, fmt.Errorf("read state of vm %d: %w", vmid, err)
	}
	if st.Snapshots, err = ParseSnapshots(res[2].Stdout); err != nil {
		return nil, fmt.Errorf("read state of vm %d: %w", vmid, err)
	}
	st.Exists, st.Config = true, cfg
	return st, nil
}
