package rig

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/goccy/go-yaml"

	"github.com/phoenix-hv/phoenix/inventory"
)

// TestVMID is the VM the rig's config defines (cloned from TemplateVMID).
const TestVMID = 8101

// GuestUser is the cloud-init user of the rig's VMs.
const GuestUser = "phoenix"

// inventoryFile is inventory.yml as phoenix reads it (see inventory/testdata).
type inventoryFile struct {
	Nodes           map[string]inventoryNode `yaml:"nodes"`
	DefaultNode     string                   `yaml:"default_node"`
	Guest           inventoryGuest           `yaml:"guest"`
	KnownHosts      string                   `yaml:"known_hosts"`
	GuestKnownHosts string                   `yaml:"guest_known_hosts"`
}

type inventoryNode struct {
	Address      string `yaml:"address"`
	Port         int    `yaml:"port"`
	User         string `yaml:"user"`
	IdentityFile string `yaml:"identity_file"`
	PVENode      string `yaml:"pve_node"`
	NFSServer    string `yaml:"nfs_server"`
}

type inventoryGuest struct {
	User         string `yaml:"user"`
	IdentityFile string `yaml:"identity_file"`
	Via          string `yaml:"via"`
	Port         int    `yaml:"port"`
}

// WriteInventory writes an inventory.yml for this rig: the node at
// 127.0.0.1:<port> as root with the node key and the pinned known_hosts, and
// guests reached directly on the rig network (the host routes to the Docker
// bridge) as GuestUser with the guest key.
// A cluster rig lists every node under its Proxmox name, each with its own
// port and NFS server address; the first is the default.
func (r *Rig) WriteInventory(path string) error {
	f := inventoryFile{
		Nodes:           map[string]inventoryNode{},
		DefaultNode:     r.nodeSpecs()[0].name,
		Guest:           inventoryGuest{User: GuestUser, IdentityFile: r.GuestKey, Via: "direct", Port: 22},
		KnownHosts:      r.KnownHosts,
		GuestKnownHosts: r.GuestKnownHosts,
	}
	for _, n := range r.nodeSpecs() {
		f.Nodes[n.name] = inventoryNode{
			Address: n.host, Port: n.port, User: "root", IdentityFile: r.NodeKey, PVENode: n.name, NFSServer: n.ip,
		}
	}
	b, err := yaml.Marshal(f)
	if err != nil {
		return err
	}
	head := "# inventory.yml for phoenix test rig " + r.ID + " (written by test/rig)\n"
	return os.WriteFile(path, append([]byte(head), b...), 0o644)
}

// ConfigFile is a phoenix_vm_configs.json document; tests change it before
// writing it.
type ConfigFile struct {
	VMDefaults ConfigDefaults `json:"vm_defaults"`
	VMs        []ConfigVM     `json:"vms"`
}

// ConfigDefaults is vm_defaults.
type ConfigDefaults struct {
	Template      string `json:"template"`
	Node          string `json:"node,omitempty"`
	Cores         int    `json:"cores"`
	MemoryMB      int    `json:"memory_mb"`
	DiskSizeGB    int    `json:"disk_size_gb"`
	StoragePool   string `json:"storage_pool"`
	NetworkBridge string `json:"network_bridge"`
}

// ConfigVM is one vms[] entry, with the fields the rig's tests use.
type ConfigVM struct {
	VMID                int                       `json:"vmid"`
	Name                string                    `json:"name"`
	Node                string                    `json:"node,omitempty"`
	IsTemplate          bool                      `json:"is_template,omitempty"`
	TemplateImage       string                    `json:"template_image,omitempty"`
	TemplateImageSHA256 string                    `json:"template_image_sha256,omitempty"`
	CloneFromVMID       int                       `json:"clone_from_vmid,omitempty"`
	Cores               int                       `json:"cores,omitempty"`
	MemoryMB            int                       `json:"memory_mb,omitempty"`
	Features            []string                  `json:"features,omitempty"`
	NetworkConfig       inventory.NetworkConfig   `json:"network_config"`
	UserConfig          ConfigUser                `json:"user_config"`
	NFSShares           []inventory.NFSShare      `json:"nfs_shares,omitempty"`
	FileInjections      []inventory.FileInjection `json:"file_injections,omitempty"`
	AgentTimeoutSeconds int                       `json:"agent_timeout_seconds,omitempty"`
	Firewall            *ConfigFirewall           `json:"firewall,omitempty"`
	// FinalSnapshot is the final snapshot's name; nil keeps phoenix's default,
	// false (json) disables it.
	FinalSnapshot any `json:"final_snapshot,omitempty"`
}

// ConfigFirewall is firewall: the VM's Proxmox firewall.
type ConfigFirewall struct {
	Enabled bool         `json:"enabled"`
	Rules   []ConfigRule `json:"rules,omitempty"`
}

// ConfigRule is one firewall rule.
type ConfigRule struct {
	Type    string `json:"type"`
	Action  string `json:"action"`
	Proto   string `json:"proto,omitempty"`
	Dport   string `json:"dport,omitempty"`
	Sport   string `json:"sport,omitempty"`
	Source  string `json:"source,omitempty"`
	Dest    string `json:"dest,omitempty"`
	Comment string `json:"comment,omitempty"`
}

// ConfigUser is user_config.
type ConfigUser struct {
	Username          string   `json:"username"`
	SSHAuthorizedKeys []string `json:"ssh_authorized_keys,omitempty"`
	Password          string   `json:"password,omitempty"`
}

// VMConfig returns the rig's phoenix_vm_configs.json: template 9000 built
// from the mirror's cloud image (template_image is its URL, with its
// sha256), and VM 8101 cloned from it at GuestIP(1), user phoenix with the
// guest key, one NFS share of the node's /export/data at /mnt/data, and
// the injection of InjectSource to /etc/motd.
func (r *Rig) VMConfig() ConfigFile {
	return ConfigFile{
		VMDefaults: ConfigDefaults{Template: "debian-12-cloud", Cores: 1, MemoryMB: 1024, DiskSizeGB: 32, StoragePool: "local-lvm", NetworkBridge: "vmbr0"},
		VMs: []ConfigVM{
			{
				VMID: TemplateVMID, Name: "debian-12-cloud", IsTemplate: true,
				TemplateImage: r.CloudImageURL, TemplateImageSHA256: r.CloudImageSHA256,
				NetworkConfig: inventory.NetworkConfig{IP: "dhcp"},
				UserConfig:    ConfigUser{Username: GuestUser},
				FinalSnapshot: false,
			},
			{
				VMID: TestVMID, Name: "phoenix-rig-test", CloneFromVMID: TemplateVMID,
				NetworkConfig: inventory.NetworkConfig{
					IP: r.GuestIP(1) + "/" + strconv.Itoa(r.PrefixLen()), GW: r.Gateway(),
				},
				UserConfig: ConfigUser{Username: GuestUser, SSHAuthorizedKeys: []string{r.GuestPubKey}},
				NFSShares: []inventory.NFSShare{{
					HostPath: "/export/data", GuestPath: "/mnt/data", Server: r.NodeIP(),
				}},
				FileInjections: []inventory.FileInjection{{
					Source: InjectSource, Destination: "/etc/motd", Mode: "0644", Owner: "root:root",
				}},
				AgentTimeoutSeconds: 90,
			},
		},
	}
}

// ClusterConfig is the cluster rig's phoenix_vm_configs.json: template
// 9000 on the first node, built on the shared storage (so a clone to
// another node goes with qm clone --target), VM 8101 cloned from it on the
// first node and 8102 on the second, each at its own address with the NFS
// share of its node (no server given: the inventory's nfs_server of its
// node) and the file injection.
func (r *Rig) ClusterConfig() ConfigFile {
	c := r.VMConfig()
	if len(r.Cluster) < 2 {
		return c
	}
	first, second := r.Cluster[0].Name, r.Cluster[1].Name
	c.VMDefaults.StoragePool = SharedStorage
	c.VMs[0].Node = first
	vm := c.VMs[1]
	vm.Node = first
	vm.NFSShares = []inventory.NFSShare{{HostPath: "/export/data", GuestPath: "/mnt/data"}}
	c.VMs[1] = vm
	vm.VMID, vm.Name, vm.Node = ClusterVMID, "phoenix-rig-test2", second
	vm.NetworkConfig.IP = r.GuestIP(2) + "/" + strconv.Itoa(r.PrefixLen())
	c.VMs = append(c.VMs, vm)
	return c
}

// ClusterVMID is the VM a cluster rig's config places on its second node.
const ClusterVMID = 8102

// LabConfig is VMConfig with the firewall of VM 8101 on: SSH from the rig
// network and ping (icmp) in. pvesim keeps firewall state, it filters no
// packets.
// A cluster lab's config is ClusterConfig's, with the firewall on both VMs.
func (r *Rig) LabConfig() ConfigFile {
	c := r.ClusterConfig()
	for i := range c.VMs {
		if !c.VMs[i].IsTemplate {
			c.VMs[i].Firewall = &ConfigFirewall{Enabled: true, Rules: []ConfigRule{
				{Type: "in", Action: "ACCEPT", Proto: "tcp", Dport: "22", Source: r.Subnet.String(), Comment: "ssh from the rig network"},
				{Type: "in", Action: "ACCEPT", Proto: "icmp", Comment: "ping"},
			}}
		}
	}
	return c
}

// Write writes the document as indented JSON.
func (c ConfigFile) Write(path string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
