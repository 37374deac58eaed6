package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// inventoryFile is the shape of inventory.yml. Unknown keys are errors.
//
//	nodes:                      # Proxmox nodes, by name (at least one)
//	  pve1:
//	    address: 192.168.1.10   # host, IP or ~/.ssh/config Host alias; default: the node name
//	    port: 22                # default: ssh_config Port, else 22
//	    user: root              # default: ssh_config User, else root
//	    identity_file: ~/.ssh/id_ed25519   # default: ssh_config IdentityFile
//	    proxy_jump: bastion     # a node name, an ssh_config alias or [user@]host[:port], comma-separated hops
//	    pve_node: pve1          # Proxmox node name: pvesh paths (default "localhost"), its cluster member name (default: the node's name here)
//	    nfs_server: 10.0.0.2    # address guests use for this node's NFS exports; default: the address
//	default_node: pve1          # default: the only node
//	vms:                        # vmid -> node; a VM's node in the config wins; default: vm_defaults.node, then default_node
//	  8101: pve1
//	guest:                      # SSH into guests when the agent is down
//	  user: phoenix             # default: the VM's user_config.username, else root
//	  identity_file: ~/.ssh/id_ed25519
//	  via: direct               # direct (network_config.ip) | jump (through the node) | address
//	  address: ""               # with via: address
//	  port: 22
//	known_hosts: ~/.ssh/known_hosts
//	guest_known_hosts: ~/.config/phoenix/guest_known_hosts
//
// Relative paths resolve against the inventory's directory; ~ is $HOME.
type inventoryFile struct {
	Nodes           map[string]*nodeFile `yaml:"nodes"`
	DefaultNode     string               `yaml:"default_node"`
	VMs             map[int]string       `yaml:"vms"`
	Guest           guestFile            `yaml:"guest"`
	KnownHosts      string               `yaml:"known_hosts"`
	GuestKnownHosts string               `yaml:"guest_known_hosts"`
}

type nodeFile struct {
	Address      string `yaml:"address"`
	Port         int    `yaml:"port"`
	User         string `yaml:"user"`
	IdentityFile string `yaml:"identity_file"`
	ProxyJump    string `yaml:"proxy_jump"`
	PVENode      string `yaml:"pve_node"`
	NFSServer    string `yaml:"nfs_server"`
}

type guestFile struct {
	User         string `yaml:"user"`
	IdentityFile string `yaml:"identity_file"`
	Via          string `yaml:"via"`
	Address      string `yaml:"address"`
	Port         int    `yaml:"port"`
}

// LoadInventory reads inventory.yml and resolves nodes through ~/.ssh/config
// (sshConfig is the ssh_config path; "" means ~/.ssh/config; a missing file
// is fine). What the inventory sets wins over ssh_config. Problems come
// back as a *ConfigError with file:line:col.
func LoadInventory(path, sshConfig string) (*Inventory, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	if sshConfig == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("inventory: find ~/.ssh/config: %w", err)
		}
		sshConfig = filepath.Join(home, ".ssh", "config")
	}
	ssh, err := readSSHConfig(sshConfig)
	if err != nil {
		return nil, err
	}
	return parseInventory(path, data, ssh)
}

func parseInventory(file string, data []byte, ssh *sshConfig) (*Inventory, error) {
	doc, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, yamlProblem(file, err)
	}
	var f inventoryFile
	if err := yaml.UnmarshalWithOptions(data, &f, yaml.DisallowUnknownField()); err != nil {
		return nil, yamlProblem(file, err)
	}
	l := &invLoader{file: file, dir: filepath.Dir(file), pos: yamlPositions(doc), ssh: ssh, seen: map[string]bool{}}
	l.controlChars(&f)
	inv := l.build(&f)
	if len(l.problems) > 0 {
		return nil, &ConfigError{File: file, Problems: sortProblems(l.problems)}
	}
	return inv, nil
}

func yamlProblem(file string, err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		tk := ye.GetToken()
		return &ConfigError{File: file, Problems: []Problem{{Line: tk.Position.Line, Column: tk.Position.Column, Message: ye.GetMessage()}}}
	}
	return &ConfigError{File: file, Problems: []Problem{{Message: err.Error()}}}
}

type invLoader struct {
	file     string
	dir      string
	pos      map[string][2]int // pointer -> line, column of the value
	ssh      *sshConfig
	problems []Problem
	seen     map[string]bool // pointers with a problem: one problem each
}

func (l *invLoader) problem(ptr, format string, args ...any) {
	if l.seen[ptr] {
		return
	}
	l.seen[ptr] = true
	line, col := nearest(ptr, func(p string) (int, int, bool) {
		lc, ok := l.pos[p]
		return lc[0], lc[1], ok
	})
	l.problems = append(l.problems, Problem{Pointer: ptr, Line: line, Column: col, Message: fmt.Sprintf(format, args...)})
}

// problemIf reports msg at ptr unless it is empty (a rule found nothing).
func (l *invLoader) problemIf(ptr, msg string) {
	if msg != "" {
		l.problem(ptr, "%s", msg)
	}
}

// controlChars refuses control characters in every string of the
// inventory: they reach command lines, pvesh paths and known_hosts lines.
func (l *invLoader) controlChars(f *inventoryFile) {
	check := func(ptr, s string) { l.problemIf(ptr, controlCharProblem(s)) }
	for name, nf := range f.Nodes {
		ptr := "/nodes/" + escapePointer(name)
		check(ptr, name)
		if nf == nil {
			continue
		}
		for key, v := range map[string]string{"address": nf.Address, "user": nf.User, "identity_file": nf.IdentityFile,
			"proxy_jump": nf.ProxyJump, "pve_node": nf.PVENode, "nfs_server": nf.NFSServer} {
			check(ptr+"/"+key, v)
		}
	}
	for vmid, node := range f.VMs {
		check("/vms/"+strconv.Itoa(vmid), node)
	}
	g := f.Guest
	for key, v := range map[string]string{"/default_node": f.DefaultNode, "/guest/user": g.User, "/guest/identity_file": g.IdentityFile,
		"/guest/via": g.Via, "/guest/address": g.Address, "/known_hosts": f.KnownHosts, "/guest_known_hosts": f.GuestKnownHosts} {
		check(key, v)
	}
}

// path resolves a local path of the inventory, reporting failures at ptr.
func (l *invLoader) path(ptr, p string) string {
	out, err := localPath(p, l.dir)
	if err != nil {
		l.problem(ptr, "%v", err)
	}
	return out
}

func (l *invLoader) build(f *inventoryFile) *Inventory {
	inv := &Inventory{File: l.file, Nodes: map[string]*Node{}, VMNodes: map[int]string{}}
	names := make([]string, 0, len(f.Nodes))
	for name := range f.Nodes {
		names = append(names, name)
	}
	slices.Sort(names)
	if len(names) == 0 {
		l.problem("/nodes", "at least one Proxmox node is required")
	}
	for _, name := range names {
		nf := f.Nodes[name]
		if nf == nil {
			nf = &nodeFile{}
		}
		inv.Nodes[name] = l.node(name, nf)
	}
	for _, name := range names {
		l.jumps(inv, name, f.Nodes[name])
	}

	inv.DefaultNode = f.DefaultNode
	switch {
	case f.DefaultNode != "":
		if inv.Nodes[f.DefaultNode] == nil && len(names) > 0 {
			l.problem("/default_node", "unknown node %q (nodes: %s)", f.DefaultNode, strings.Join(names, ", "))
		}
	case len(names) == 1:
		inv.DefaultNode = names[0]
	case len(names) > 1:
		l.problem("/default_node", "is required with more than one node (nodes: %s)", strings.Join(names, ", "))
	}
	for vmid, node := range f.VMs {
		ptr := "/vms/" + strconv.Itoa(vmid)
		switch {
		case vmid < 100 || vmid > 999999999:
			l.problem(ptr, "vmid must be between 100 and 999999999")
		case inv.Nodes[node] == nil:
			l.problem(ptr, "unknown node %q (nodes: %s)", node, strings.Join(names, ", "))
		default:
			inv.VMNodes[vmid] = node
		}
	}

	g := f.Guest
	inv.Guest = GuestAccess{User: g.User, IdentityFile: l.path("/guest/identity_file", g.IdentityFile), Via: g.Via, Address: g.Address, Port: g.Port}
	if g.User != "" {
		l.problemIf("/guest/user", userNameProblem(g.User))
	}
	if g.Address != "" {
		l.problemIf("/guest/address", hostProblem(g.Address))
	}
	switch g.Via {
	case "":
		inv.Guest.Via = "direct"
	case "direct", "jump", "address":
	default:
		l.problem("/guest/via", "must be direct, jump or address, not %q", g.Via)
	}
	if inv.Guest.Port == 0 {
		inv.Guest.Port = 22
	} else if !validPort(inv.Guest.Port) {
		l.problem("/guest/port", "must be a port between 1 and 65535")
	}

	inv.KnownHosts = l.path("/known_hosts", firstOf(f.KnownHosts, "~/.ssh/known_hosts"))
	inv.GuestKnownHosts = l.path("/guest_known_hosts", firstOf(f.GuestKnownHosts, "~/.config/phoenix/guest_known_hosts"))
	return inv
}

// node resolves one node: the inventory first, then ssh_config for the
// alias (address, else the node name), then defaults.
func (l *invLoader) node(name string, nf *nodeFile) *Node {
	ptr := "/nodes/" + escapePointer(name)
	alias := firstOf(nf.Address, name)
	h, err := l.ssh.host(alias)
	if err != nil {
		l.problem(ptr, "%v", err)
	}
	n := &Node{
		Name:         name,
		Address:      firstOf(h.hostname, alias),
		Port:         nf.Port,
		User:         firstOf(nf.User, h.user, "root"),
		IdentityFile: l.path(ptr+"/identity_file", nf.IdentityFile),
		ProxyJump:    firstOf(nf.ProxyJump, h.proxyJump),
		PVENode:      firstOf(nf.PVENode, "localhost"),
	}
	if n.IdentityFile == "" {
		n.IdentityFile = h.identityFile
	}
	switch {
	case nf.Port != 0 && !validPort(nf.Port):
		l.problem(ptr+"/port", "must be a port between 1 and 65535")
	case nf.Port == 0:
		n.Port = firstInt(h.port, 22)
	}
	// Users written here are Linux user names, as in the config. One from
	// ~/.ssh/config (or a jump hop) is the user's own SSH setup, which
	// OpenSSH reads too; phoenix sends it only inside the SSH protocol.
	if nf.User != "" {
		l.problemIf(ptr+"/user", userNameProblem(nf.User))
	}
	if nf.PVENode != "" && !pveNodeRE.MatchString(nf.PVENode) {
		l.problem(ptr+"/pve_node", "must be a Proxmox node name (letters, digits and inner '-'), not %q", nf.PVENode)
	}
	n.NFSServer = firstOf(nf.NFSServer, n.Address)
	if h, ok := nfsHost(n.NFSServer); ok {
		n.NFSServer = h
	} else if nf.NFSServer != "" {
		l.problem(ptr+"/nfs_server", "must be a host name or an IP address, not %q", nf.NFSServer)
	}
	return n
}

// jumps resolves the ProxyJump chain of a node into Node.Jump links. A hop
// that names an inventory node is that node; others go through ssh_config.
func (l *invLoader) jumps(inv *Inventory, name string, nf *nodeFile) {
	n := inv.Nodes[name]
	ptr := "/nodes/" + escapePointer(name) + "/proxy_jump"
	if nf == nil || nf.ProxyJump == "" {
		ptr = "/nodes/" + escapePointer(name) // from ssh_config
	}
	jump, err := l.ssh.chain(inv, n.ProxyJump, []string{name})
	if err != nil {
		l.problem(ptr, "proxy jump: %v", err)
		return
	}
	n.Jump = jump
}

// pveNodeRE is Proxmox's node name format (pve-node).
var pveNodeRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$`)

func validPort(p int) bool { return p >= 1 && p <= 65535 }

// firstOf returns the first non-empty string.
func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// firstInt returns the first non-zero int.
func firstInt(vals ...int) int {
	for _, v := range vals {
		if v != 0 {
			return v
		}
	}
	return 0
}

// yamlPositions maps the JSON pointer of every value in the document to
// its line and column: a scalar's own, a collection's or null's key.
func yamlPositions(f *ast.File) map[string][2]int {
	out := map[string][2]int{}
	at := func(ptr string, n ast.Node) {
		if tk := n.GetToken(); tk != nil {
			out[ptr] = [2]int{tk.Position.Line, tk.Position.Column}
		}
	}
	var walk func(n ast.Node, ptr string)
	member := func(mv *ast.MappingValueNode, ptr string) {
		if mv.Key == nil || mv.Key.GetToken() == nil {
			return
		}
		child := ptr + "/" + escapePointer(mv.Key.GetToken().Value)
		at(child, mv.Key)
		if _, null := mv.Value.(*ast.NullNode); !null {
			walk(mv.Value, child)
		}
	}
	walk = func(n ast.Node, ptr string) {
		switch n := n.(type) {
		case nil:
		case *ast.DocumentNode:
			walk(n.Body, ptr)
		case *ast.MappingValueNode: // a one-key mapping
			member(n, ptr)
		case *ast.MappingNode:
			// A collection is where its key is; the document's where its
			// first key is (the node's own token is the first ':').
			if _, keyed := out[ptr]; !keyed {
				if len(n.Values) > 0 && n.Values[0].Key != nil {
					at(ptr, n.Values[0].Key)
				} else {
					at(ptr, n)
				}
			}
			for _, mv := range n.Values {
				member(mv, ptr)
			}
		case *ast.SequenceNode:
			if _, keyed := out[ptr]; !keyed {
				at(ptr, n)
			}
			for i, v := range n.Values {
				walk(v, ptr+"/"+strconv.Itoa(i))
			}
		default:
			at(ptr, n)
		}
	}
	for _, d := range f.Docs {
		walk(d, "")
	}
	return out
}
