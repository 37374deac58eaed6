// Package pvesim simulates a Proxmox VE 8 node for phoenix's integration
// rig: the qm and pvesh command lines phoenix runs over SSH, with the
// output formats, exit codes and error texts of the real tools (see
// shared/reference/qm.md), and VMs that are Docker containers.
//
// State lives where Proxmox keeps it, below PVESIM_ROOT (default "/"):
// VM configs in /etc/pve/qemu-server/VMID.conf in Proxmox's format
// (description as leading # lines, [PENDING], [special:cloudinit] and
// snapshot sections), flocks in /var/lock/qemu-server/lock-VMID.conf,
// agent sockets in /var/run/qemu-server/VMID.qga, pid files next to them.
// pvesim's own records: /etc/pvesim/origin/VMID (the template a clone came
// from), /var/lib/pvesim/volumes (sizes of imported disks).
//
// Settings come from the environment or /etc/pvesim/env (KEY=VALUE lines;
// the environment wins): PVESIM_NODE, PVESIM_HOST_DIR, PVESIM_NETWORK,
// PVESIM_GUEST_IMAGE, PVESIM_RIG_ID, PVESIM_PRIVILEGED (false: the engine
// refuses --privileged, guests get CAP_SYS_ADMIN; without it pvesim tries
// --privileged and falls back). Fault switches are files on the node:
// /etc/pvesim/faults/VMID/NAME becomes PHOENIX_FAULT_NAME=<content or 1>
// in the guest's environment at start; /etc/pvesim/latency_ms delays every
// call; `pvesim hold-lock VMID SECONDS` holds a VM's flock.
//
// A VM start renders the NoCloud seed (user-data, network-config,
// meta-data, vendor-data; cicustom snippets replace generated parts) into
// /rig/seed/VMID and starts container phoenix-rig-<rig>-vm-<vmid> from the
// guest image (or /etc/pvesim/images/<template vmid>), privileged, on the
// rig network at the address of ipconfig0 with net0's MAC. stop kills the
// container and keeps it; the next start starts the same container again,
// so guest state survives a stop/start unless the VM's container spec
// (image, address, MAC, hostname, fault switches) changed, which recreates
// it. shutdown sends SIGTERM to the guest's init and waits the timeout.
// The guest agent is the real qemu-ga in the guest, spoken to over its
// socket with the QGA protocol.
//
// Not simulated: storage (volumes are names in the config; resize,
// snapshots and linked clones change only the config, a snapshot rollback
// does not restore guest files, the container's filesystem is the VM's
// only disk), QMP and QEMU itself (no monitor, no live migration, no
// hotplug beyond the config rules, no VM state in snapshots, qm status
// shows running/stopped only), HA, clusters and quorum (one node, no
// proxying to other nodes), permissions, pools, firewall, backups, and
// pvesh's "text" tables (structured results print as JSON). The cloud-init
// seed is always NoCloud, even for citype configdrive2 (qm cloudinit dump
// still prints the configdrive2 format).
package pvesim
