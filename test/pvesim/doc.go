// Package pvesim simulates a Proxmox VE 8 node for phoenix's integration
// rig: the qm and pvesh command lines phoenix runs over SSH, with the
// output formats, exit codes and error texts of the real tools (see
// shared/reference/qm.md), and VMs that are Docker containers.
//
// State lives where Proxmox keeps it, below PVESIM_ROOT (default "/"):
// VM configs in /etc/pve/nodes/NODE/qemu-server/VMID.conf in Proxmox's
// format (description as leading # lines, [PENDING], [special:cloudinit]
// and snapshot sections), seen through the symlinks /etc/pve/qemu-server
// and /etc/pve/local as pmxcfs makes them, with /etc/pve/.vmlist in
// pmxcfs's format; flocks in /var/lock/qemu-server/lock-VMID.conf, agent
// sockets in /var/run/qemu-server/VMID.qga, pid files next to them (a
// running VM's names a stand-in for its QEMU process on the node: this
// program as /usr/bin/kvm with QEMU's -id, -name, -chardev and -pidfile,
// living as long as the VM's container runs, so a reader that decides
// "running" as Proxmox does, from the pid file and /proc, agrees with qm),
// storages in /etc/pve/storage.cfg (a missing "local" is the built-in dir
// storage at /var/lib/vz), downloaded images below the storage's path
// (import/, template/iso/), task logs in /var/log/pve/tasks/X/UPID.
// pvesim's own record: /var/lib/pvesim/volumes (sizes of disks).
//
// Several nodes share one /etc/pve (a rig cluster bind-mounts one folder
// into each, cluster.go): qm works on the local node's VMs only, as the
// real one, and .vmlist lists every node's; /etc/pve/.members names the
// members. A VMID is the cluster's (qm create and clone refuse one another
// node has), qm clone --target puts the clone in the target's directory
// when the source's volumes are on shared storage, and qm migrate moves a
// stopped VM's config there (its disks are Docker images every node sees).
//
// Disks are real. A VM disk's content is a Docker image,
// phoenix-rig-<rig>-disk:<volume id>; pvesim's disk image format (what
// stands for qcow2) is a tar archive of a root file system, optionally
// gzip-compressed, and any other file is raw data, which imports but
// boots nothing. import-from and qm disk import `docker import` the file
// (cached by its sha256 as phoenix-rig-import:<sum>); qm template stores
// the template's container (what its guest wrote) as the base volume
// (docker commit); clones copy the image (docker tag: copy-on-write, as a
// linked clone is), a full clone of a VM that ran takes its writes too;
// destroy and deleting an unused volume remove the image. download-url
// fetches with Go's HTTP client (wget's log lines without its progress).
//
// The firewall's state lives where Proxmox keeps it: /etc/pve/firewall/
// VMID.fw and cluster.fw, read and written as pve-firewall does, with the
// pvesh endpoints of a VM's options and rules (list, get, create, update,
// move, delete; digests, the firewall-VMID lock, PVE's verification
// against the node's /etc/protocols and /etc/services) and the
// datacenter's options (get). qm clone copies a VM's .fw, qm destroy
// removes it, net0's firewall=1 is a config key like any other. pvesim
// filters no packets: there is no pve-firewall daemon.
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
// /rig/seed/VMID and starts container phoenix-rig-<rig>-vm-<vmid> from its
// boot disk's image (run with the guest image's init), privileged, on the
// rig network at the address of ipconfig0 with net0's MAC. A VM whose boot
// disk holds no root file system starts the guest image hung before boot
// (PHOENIX_FAULT_BOOT_HANG), like a machine without a bootable disk. stop
// kills the container and keeps it; the next start starts the same
// container again, so guest state survives a stop/start; a changed
// container spec (address, MAC, hostname, fault switches) makes a new
// container after the old one's writes were stored in the disk. shutdown
// sends SIGTERM to the guest's init and waits the timeout.
// The guest agent is the real qemu-ga in the guest, spoken to over its
// socket with the QGA protocol.
//
// Not simulated: storage beyond that (resize and snapshots change only the
// config, a snapshot rollback does not restore guest files, only the boot
// disk is mounted, storage tools print nothing, download-url does not
// decompress, import-from takes a file, not another VM's disk), QMP and QEMU itself (no monitor, no live migration, no
// hotplug beyond the config rules, no VM state in snapshots, qm status
// shows running/stopped only), HA, clusters and quorum (one node, no
// proxying to other nodes), permissions, pools, packet filtering (the
// firewall's aliases, IP sets and macros are kept, not expanded), backups, and
// pvesh's "text" tables (structured results print as JSON). The cloud-init
// seed is always NoCloud, even for citype configdrive2 (qm cloudinit dump
// still prints the configdrive2 format).
package pvesim
