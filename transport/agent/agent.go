// Package agent is a guest transport through the QEMU guest agent, driven
// with qm/pvesh on the Proxmox node.
package agent

import "github.com/phoenix-hv/phoenix/transport"

// Transport runs commands and moves files in guest vmid through node.
// (Contract stub: replaced by the agent transport.)
type Transport struct {
	Node    transport.Runner
	PVENode string
	VMID    int
}

// New returns the agent transport of vmid on node.
func New(node transport.Runner, pveNode string, vmid int) *Transport {
	return &Transport{Node: node, PVENode: pveNode, VMID: vmid}
}
