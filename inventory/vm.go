// Package inventory loads what phoenix is told to build: the VM config
// (phoenix_vm_configs.json, in the shape the Phoenix Hypervisor project uses)
// and the inventory (inventory.yml: Proxmox nodes and how to reach guests).
// It is pure: it reads files and nothing else.
package inventory

import (
	"encoding/json"
	"path"
	"strconv"
	"strings"
	"time"
)

// Config is a loaded, validated phoenix_vm_configs.json.
type Config struct {
	File     string
	Defaults VMDefaults
	VMs      []*VM
	// Warnings are kept, not fatal: unknown keys, fields the original project
	// ignored, lenient parses.
	Warnings []Warning
	// Extra holds top-level keys phoenix does not know, kept as they were.
	Extra map[string]json.RawMessage
}

// Warning points at a place in the config file.
type Warning struct {
	File    string
	Pointer string // JSON pointer, e.g. /vms/2/traefik_service
	Line    int
	Column  int
	Message string
}

// VMDefaults is the top-level vm_defaults object.
type VMDefaults struct {
	Template      string `json:"template,omitempty"`
	Cores         int    `json:"cores,omitempty"`
	MemoryMB      int    `json:"memory_mb,omitempty"`
	DiskSizeGB    int    `json:"disk_size_gb,omitempty"`
	StoragePool   string `json:"storage_pool,omitempty"`
	NetworkBridge string `json:"network_bridge,omitempty"`
	// TemplateImageBaseURL is where a template_image file name is fetched
	// from, for every VM that does not say otherwise.
	TemplateImageBaseURL string `json:"template_image_base_url,omitempty"`
	// Node is the inventory node of every VM that names none (and has no
	// entry under the inventory's vms:).
	Node string `json:"node,omitempty"`
	// TrustedCAFiles are the trusted_ca_files of every VM that has none.
	TrustedCAFiles []string `json:"trusted_ca_files,omitempty"`

	nodeAt position // where Node is written
}

// VM is one entry of vms[], with vm_defaults merged in and the new phoenix
// fields defaulted. Legacy volumes[] of type nfs are folded into NFSShares.
type VM struct {
	VMID                 int             `json:"vmid"`
	Name                 string          `json:"name"`
	IsTemplate           bool            `json:"is_template,omitempty"`
	CloneFromVMID        int             `json:"clone_from_vmid,omitempty"`
	TemplateImage        string          `json:"template_image,omitempty"`
	TemplateImageSHA256  string          `json:"template_image_sha256,omitempty"`   // lower-case hex; verifies the download, tells drift
	TemplateImageBaseURL string          `json:"template_image_base_url,omitempty"` // default: vm_defaults, then DefaultImageBaseURL
	TemplateSnapshotName string          `json:"template_snapshot_name,omitempty"`
	Cores                int             `json:"cores,omitempty"`
	MemoryMB             int             `json:"memory_mb,omitempty"`
	DiskSizeGB           int             `json:"disk_size_gb,omitempty"`
	StoragePool          string          `json:"storage_pool,omitempty"`
	NetworkBridge        string          `json:"network_bridge,omitempty"`
	StartAtBoot          *bool           `json:"start_at_boot,omitempty"`
	BootOrder            *int            `json:"boot_order,omitempty"`
	BootDelay            *int            `json:"boot_delay,omitempty"`
	Features             []string        `json:"features,omitempty"`
	Snapshots            Snapshots       `json:"snapshots,omitempty"`
	Volumes              []Volume        `json:"volumes,omitempty"`
	NFSShares            []NFSShare      `json:"nfs_shares,omitempty"`
	FileInjections       []FileInjection `json:"file_injections,omitempty"`
	NetworkConfig        NetworkConfig   `json:"network_config,omitempty"`
	UserConfig           UserConfig      `json:"user_config,omitempty"`
	Firewall             *Firewall       `json:"firewall,omitempty"`
	DockerStacks         []DockerStack   `json:"docker_stacks,omitempty"`
	Dependencies         []string        `json:"dependencies,omitempty"`
	PortainerRole        string          `json:"portainer_role,omitempty"`
	Count                int             `json:"count,omitempty"`
	// Node is the inventory node the VM is placed on, as written on the VM
	// (vm_defaults' is not merged in: Inventory.Home decides).
	Node          string            `json:"node,omitempty"`
	QMOptions     []string          `json:"qm_options,omitempty"`
	DNSRecords    []json.RawMessage `json:"dns_records,omitempty"`
	IptablesRules []string          `json:"iptables_rules,omitempty"`
	TriggerSync   bool              `json:"trigger_sync_on_completion,omitempty"`

	// New in phoenix.
	AgentTimeoutSeconds int      `json:"agent_timeout_seconds"` // default 300
	FinalSnapshot       string   `json:"final_snapshot"`        // default "final-form"; "" when disabled (false in JSON)
	GuestSSH            GuestSSH `json:"guest_ssh,omitempty"`
	// TrustedCAFiles are CA certificate files (PEM) on the Proxmox node that
	// the trusted_ca feature adds to the guest's trust store; default
	// vm_defaults' (an empty list on the VM means none).
	TrustedCAFiles []string `json:"trusted_ca_files,omitempty"`

	// Extra holds keys phoenix does not know, kept as they were.
	Extra map[string]json.RawMessage `json:"-"`

	// deps is DependsOn, computed by LoadConfig.
	deps []int
	// nodeAt is where Node is written, for errors found with the inventory.
	nodeAt position
	// featuresAt is where each of Features is written, for errors found
	// later (a feature without a script).
	featuresAt []position
}

// position is a place in the config file, for errors found later.
type position struct {
	ptr       string
	line, col int
}

// Snapshots names the optional snapshots around features.
type Snapshots struct {
	PreFeatures  string `json:"pre-features,omitempty"`
	PostFeatures string `json:"post-features,omitempty"`
}

// Volume is the original project's volumes[] entry.
type Volume struct {
	Type       string `json:"type"`
	Name       string `json:"name,omitempty"`
	Path       string `json:"path"`
	MountPoint string `json:"mount_point"`
	Server     string `json:"server"`
}

// NFSShare is one NFS mount in the guest. HostPath is exported by Server
// (default: the Proxmox node's nfs_server address from the inventory).
// LoadConfig moves a server written in host_path ("server:/path") to
// Server, and writes Server as it goes before ":" in fstab: a host name
// as written, an IP address in canonical form, IPv6 in brackets.
type NFSShare struct {
	HostPath  string `json:"host_path"`
	GuestPath string `json:"guest_path"`
	Options   string `json:"options,omitempty"` // default "defaults,auto,nofail"
	Server    string `json:"server,omitempty"`
}

// FileInjection copies Source (a path on the Proxmox node) to Destination in
// the guest.
type FileInjection struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Mode        string `json:"mode,omitempty"`  // octal, e.g. "0644"
	Owner       string `json:"owner,omitempty"` // user or user:group
	// Sensitive content (a token, a key) never shows in diffs or events.
	// The file_inject task does not take it yet (tasks.Decode refuses
	// unknown parameters), so create.yml does not pass it.
	Sensitive bool `json:"sensitive,omitempty"`
}

// NetworkConfig is the cloud-init network of the VM.
type NetworkConfig struct {
	IP           string `json:"ip,omitempty"` // "dhcp" or CIDR
	GW           string `json:"gw,omitempty"`
	Nameserver   string `json:"nameserver,omitempty"`
	Searchdomain string `json:"searchdomain,omitempty"`
}

// UserConfig is the cloud-init user.
type UserConfig struct {
	Username          string   `json:"username,omitempty"`
	SSHAuthorizedKeys []string `json:"ssh_authorized_keys,omitempty"`
	// Password becomes cipassword. It never appears in any output.
	Password Secret `json:"password,omitempty"`
}

// GuestSSH says how to reach the guest directly when the agent is down.
// Empty fields come from the inventory.
type GuestSSH struct {
	User         string `json:"user,omitempty"`
	IdentityFile string `json:"identity_file,omitempty"`
	Address      string `json:"address,omitempty"`
	Port         int    `json:"port,omitempty"`
}

// Firewall is the VM's Proxmox firewall: its switch and its rules, in order
// (the first rule that matches decides).
type Firewall struct {
	Enabled bool           `json:"enabled"`
	Rules   []FirewallRule `json:"rules,omitempty"`
}

// FirewallRule is one rule in the original config's shape. LoadConfig
// writes type and proto lower-case and action upper-case, as Proxmox wants
// them, and moves the original's port to dport.
type FirewallRule struct {
	Type    string `json:"type"`            // in or out
	Action  string `json:"action"`          // ACCEPT, DROP or REJECT
	Proto   string `json:"proto,omitempty"` // tcp, udp, icmp, … or a protocol number
	DPort   string `json:"dport,omitempty"` // 22, 80:85, 80,443, ssh
	SPort   string `json:"sport,omitempty"`
	Port    string `json:"port,omitempty"`   // the original's name for dport
	Source  string `json:"source,omitempty"` // address, CIDR, range a-b, list, +ipset or alias
	Dest    string `json:"dest,omitempty"`
	Comment string `json:"comment,omitempty"`
}

// DockerStack accepts both the schema's object and the real config's string.
type DockerStack struct {
	Name        string          `json:"name"`
	Environment json.RawMessage `json:"environment,omitempty"`
}

// UnmarshalJSON accepts "name" as well as {"name": …, "environment": …}.
func (d *DockerStack) UnmarshalJSON(b []byte) error {
	var name string
	if json.Unmarshal(b, &name) == nil {
		*d = DockerStack{Name: name}
		return nil
	}
	type plain DockerStack // without this method
	return json.Unmarshal(b, (*plain)(d))
}

// Secret is a string that never prints.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "(sensitive)"
}

// MarshalJSON keeps secrets out of JSON output (render, events).
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalYAML keeps secrets out of YAML output (phoenix render).
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// Reveal returns the real value, for the one place that must send it.
func (s Secret) Reveal() string { return string(s) }

// AgentTimeout is how long phoenix waits for the guest to answer:
// agent_timeout_seconds, DefaultAgentTimeoutSeconds when unset.
func (vm *VM) AgentTimeout() time.Duration {
	if vm.AgentTimeoutSeconds > 0 {
		return time.Duration(vm.AgentTimeoutSeconds) * time.Second
	}
	return DefaultAgentTimeoutSeconds * time.Second
}

// FeatureProblem is msg about the VM's feature i, placed where the config
// names it.
func (vm *VM) FeatureProblem(i int, msg string) Problem {
	p := Problem{Pointer: "/features/" + strconv.Itoa(i), Message: msg}
	if i < len(vm.featuresAt) {
		at := vm.featuresAt[i]
		p.Pointer, p.Line, p.Column = at.ptr, at.line, at.col
	}
	return p
}

// CAFileName is the name a trusted_ca_files entry gets in the guest: its
// base name, its extension (.crt, .pem, .cer) made .crt, the one
// update-ca-certificates takes.
func CAFileName(src string) string {
	base := path.Base(src)
	for _, ext := range []string{".crt", ".pem", ".cer"} {
		if strings.HasSuffix(base, ext) && len(base) > len(ext) {
			base = strings.TrimSuffix(base, ext)
			break
		}
	}
	return base + ".crt"
}

// FeatureNeeds says what the VM's config lacks for feature name to run, ""
// when nothing: the trusted_ca feature needs trusted_ca_files.
func (vm *VM) FeatureNeeds(name string) string {
	if name == TrustedCAFeature && len(vm.TrustedCAFiles) == 0 {
		return "feature " + TrustedCAFeature + " needs trusted_ca_files: the CA certificate files (PEM) on the node to trust, " +
			`on the VM or in vm_defaults, e.g. ["/etc/pve/phoenix/root_ca.crt"] (every node of a cluster has the files under /etc/pve)`
	}
	return ""
}

// Lookup returns the VM with vmid, or nil.
func (c *Config) Lookup(vmid int) *VM {
	for _, vm := range c.VMs {
		if vm.VMID == vmid {
			return vm
		}
	}
	return nil
}
