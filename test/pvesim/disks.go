package pvesim

import (
	"context"
	"fmt"
	"regexp"
	"strings"
)

// VM disks. Proxmox keeps a disk's bytes on a storage; pvesim keeps a
// disk's content as a Docker image, diskRef(volid), and a VM boots its boot
// disk as a container made from that image. The container's writable layer
// holds what the guest wrote since: qm template and a full clone of a VM
// that ran store it back (docker commit), a linked or full clone of a
// template copies the image (docker tag: copy-on-write, as a linked clone
// is). A disk without an image (allocated empty, or imported from a file
// that is no root file system) boots nothing.

var unsafeTagRE = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// disks is the disk store; without one, disks hold nothing.
func (c *call) disks() Disks {
	if c.Disks == nil {
		return noDisks{}
	}
	return c.Disks
}

type noDisks struct{}

func (noDisks) ImportDisk(context.Context, string, string) error         { return nil }
func (noDisks) CommitDisk(context.Context, string, string) (bool, error) { return false, nil }
func (noDisks) CopyDisk(context.Context, string, string) (bool, error)   { return false, nil }
func (noDisks) RemoveDisk(context.Context, string) error                 { return nil }
func (noDisks) HasDisk(context.Context, string) (bool, error)            { return false, nil }

// diskRef names the image of volume volid: phoenix-rig-<rig>-disk:<volid
// with every character a tag cannot hold replaced by "_">.
func (s *Sim) diskRef(volid string) string {
	return fmt.Sprintf("phoenix-rig-%s-disk:%s", s.RigID, unsafeTagRE.ReplaceAllString(volid, "_"))
}

// bootDrive is the disk a VM boots: the first disk of "boot: order=", else
// "bootdisk", else the first disk (as qm list's BOOTDISK column picks it).
func bootDrive(conf map[string]string) *drive {
	order := bootOrder(conf)
	for _, d := range drives(conf) {
		order = append(order, d.key)
	}
	for _, k := range order {
		if v, ok := conf[k]; ok && driveKeyRE.MatchString(k) {
			if d := parseDrive(k, v); d.isDisk() {
				return d
			}
		}
	}
	return nil
}

// ownsVolume reports whether volid is a disk of VM vmid (its own volumes,
// linked clones included; not a template's base volume it refers to).
func ownsVolume(vmid int, volid string) bool {
	_, name, ok := strings.Cut(volid, ":")
	if !ok {
		return false
	}
	last := name[strings.LastIndex(name, "/")+1:]
	for _, prefix := range []string{"vm", "base"} {
		if strings.HasPrefix(last, fmt.Sprintf("%s-%d-", prefix, vmid)) {
			return true
		}
	}
	return false
}

// convertToBase stores disks as a template's base volumes: the boot disk
// of conf with what the guest wrote, other disks as they are.
func (c *call) convertToBase(vmid int, conf map[string]string, disks []*drive) error {
	boot := bootDrive(conf)
	for _, d := range disks {
		from, to := c.diskRef(d.volid()), c.diskRef(baseName(d.volid()))
		if from == to {
			continue
		}
		stored := false
		if boot != nil && boot.key == d.key {
			var err error
			if stored, err = c.disks().CommitDisk(c.ctx, c.containerName(vmid), to); err != nil {
				return err
			}
		}
		if !stored {
			if _, err := c.disks().CopyDisk(c.ctx, from, to); err != nil {
				return err
			}
		}
		if err := c.disks().RemoveDisk(c.ctx, from); err != nil {
			return err
		}
	}
	return nil
}

// cloneDisk copies one disk of VM vmid to volume to: a full clone of the
// boot disk of a VM that is not a template takes the guest's writes too.
func (c *call) cloneDisk(vmid int, src map[string]string, d *drive, to string, full bool) error {
	if boot := bootDrive(src); full && src["template"] != "1" && boot != nil && boot.key == d.key {
		stored, err := c.disks().CommitDisk(c.ctx, c.containerName(vmid), c.diskRef(to))
		if err != nil || stored {
			return err
		}
	}
	_, err := c.disks().CopyDisk(c.ctx, c.diskRef(d.volid()), c.diskRef(to))
	return err
}

// freeDisks deletes the images of the volumes VM vmid owns in conf (disks
// and unused volumes).
func (c *call) freeDisks(vmid int, conf map[string]string) error {
	for _, k := range sortedKeys(conf) {
		if !driveKeyRE.MatchString(k) && !strings.HasPrefix(k, "unused") {
			continue
		}
		d := parseDrive(k, conf[k])
		if !d.isDisk() || !ownsVolume(vmid, d.volid()) {
			continue
		}
		if err := c.disks().RemoveDisk(c.ctx, c.diskRef(d.volid())); err != nil {
			return err
		}
	}
	return nil
}
