package guest

import (
	"bytes"
	"strings"
	"testing"
)

var data = Entry{Source: "10.0.0.2:/export/8101", MountPoint: "/mnt/data", FSType: "nfs", Options: "defaults,auto,nofail"}

// dataLine is data as EditFstab writes it, marked as phoenix's.
const dataLine = "10.0.0.2:/export/8101 /mnt/data nfs defaults,auto,nofail,x-phoenix 0 0"

func TestEditFstab(t *testing.T) {
	root := "UUID=1234-abcd / ext4 errors=remount-ro 0 1\n"
	tests := []struct {
		name    string
		old     string
		entry   Entry
		want    string
		changed bool
	}{
		{"empty file", "", data, dataLine + "\n", true},
		{"append", root, data, root + dataLine + "\n", true},
		{"append keeps comments", "# /etc/fstab: static file system information.\n#\n" + root,
			data, "# /etc/fstab: static file system information.\n#\n" + root + dataLine + "\n", true},
		{"present", root + dataLine + "\n", data, root + dataLine + "\n", false},
		{"present with other spacing", root + "10.0.0.2:/export/8101\t/mnt/data  nfs\tdefaults,auto,nofail,x-phoenix\t0\t0\n",
			data, root + "10.0.0.2:/export/8101\t/mnt/data  nfs\tdefaults,auto,nofail,x-phoenix\t0\t0\n", false},
		{"present without dump and pass", root + "10.0.0.2:/export/8101 /mnt/data nfs defaults,auto,nofail,x-phoenix\n",
			data, root + "10.0.0.2:/export/8101 /mnt/data nfs defaults,auto,nofail,x-phoenix\n", false},
		{"unmarked NFS line gains the marker", root + "10.0.0.2:/export/8101 /mnt/data nfs defaults,auto,nofail 0 0\n",
			data, root + dataLine + "\n", true},
		{"nfs4 line replaced", "srv:/x /mnt/data nfs4 rw 0 0\n" + root, data, dataLine + "\n" + root, true},
		{"marked line of another type replaced", "/srv/x /mnt/data none bind,x-phoenix 0 0\n", data, dataLine + "\n", true},
		{"marker already in the options not repeated", root,
			Entry{Source: "srv:/x", MountPoint: "/mnt/x", FSType: "nfs", Options: "x-phoenix,ro"},
			root + "srv:/x /mnt/x nfs x-phoenix,ro 0 0\n", true},
		{"no options: the marker alone", "", Entry{Source: "srv:/x", MountPoint: "/mnt/x", FSType: "nfs"},
			"srv:/x /mnt/x nfs x-phoenix 0 0\n", true},
		{"replace in place", root + "10.0.0.9:/old /mnt/data nfs ro 0 0\n/dev/sdb1 /srv ext4 defaults 0 2\n",
			data, root + dataLine + "\n/dev/sdb1 /srv ext4 defaults 0 2\n", true},
		{"replace trailing slash mount point", "10.0.0.2:/export/8101 /mnt/data/ nfs defaults,auto,nofail 0 0\n",
			data, dataLine + "\n", true},
		{"replace trailing junk", dataLine + " junk\n", data, dataLine + "\n", true},
		{"duplicates removed", dataLine + "\n" + root + "10.0.0.9:/old /mnt/data nfs ro 0 0\n" + dataLine + "\n",
			data, dataLine + "\n" + root, true},
		{"duplicates after a differing line", "10.0.0.9:/old /mnt/data nfs ro 0 0\n" + root + dataLine + "\n",
			data, dataLine + "\n" + root, true},
		{"commented line for the mount point stays", "#" + dataLine + "\n" + root,
			data, "#" + dataLine + "\n" + root + dataLine + "\n", true},
		{"indented comment stays", "  # 10.0.0.9:/old /mnt/data nfs ro 0 0\n",
			data, "  # 10.0.0.9:/old /mnt/data nfs ro 0 0\n" + dataLine + "\n", true},
		{"blank lines stay", "\n" + root + "\n", data, "\n" + root + "\n" + dataLine + "\n", true},
		{"no final newline, append", strings.TrimSuffix(root, "\n"), data, root + dataLine + "\n", true},
		{"no final newline, present", root + dataLine, data, root + dataLine, false},
		{"no final newline, replace", root + "10.0.0.9:/old /mnt/data nfs ro 0 0", data, root + dataLine + "\n", true},
		{"no final newline, duplicate dropped", root + dataLine + "\n" + dataLine, data, root + dataLine + "\n", true},
		{"crlf append", "UUID=1 / ext4 defaults 0 1\r\n", data, "UUID=1 / ext4 defaults 0 1\r\n" + dataLine + "\r\n", true},
		{"crlf present", "UUID=1 / ext4 defaults 0 1\r\n" + dataLine + "\r\n", data, "UUID=1 / ext4 defaults 0 1\r\n" + dataLine + "\r\n", false},
		{"crlf replace", "10.0.0.9:/old /mnt/data nfs ro 0 0\r\nUUID=1 / ext4 defaults 0 1\r\n",
			data, dataLine + "\r\nUUID=1 / ext4 defaults 0 1\r\n", true},
		{"spaces escaped", root,
			Entry{Source: "srv:/export/my share", MountPoint: "/mnt/my data", FSType: "nfs", Options: "defaults"},
			root + `srv:/export/my\040share /mnt/my\040data nfs defaults,x-phoenix 0 0` + "\n", true},
		{"escaped mount point matched", `srv:/old /mnt/my\040data nfs ro 0 0` + "\n",
			Entry{Source: "srv:/export/x", MountPoint: "/mnt/my data", FSType: "nfs", Options: "defaults"},
			`srv:/export/x /mnt/my\040data nfs defaults,x-phoenix 0 0` + "\n", true},
		{"tab, backslash and hash escaped", "",
			Entry{Source: `#srv:/a\b`, MountPoint: "/mnt/t\tab", FSType: "nfs", Options: "defaults"},
			`\043srv:/a\134b /mnt/t\011ab nfs defaults,x-phoenix 0 0` + "\n", true},
		{"other mount point with the same prefix stays", "10.0.0.9:/x /mnt/data2 nfs ro 0 0\n",
			data, "10.0.0.9:/x /mnt/data2 nfs ro 0 0\n" + dataLine + "\n", true},
		{"dump and pass compared", root + "10.0.0.2:/export/8101 /mnt/data nfs defaults,auto,nofail,x-phoenix 0 2\n",
			data, root + dataLine + "\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed, err := EditFstab([]byte(tt.old), tt.entry)
			if err != nil || string(got) != tt.want || changed != tt.changed {
				t.Errorf("EditFstab(%q)\n got: %q, %v, %v\nwant: %q, %v", tt.old, got, changed, err, tt.want, tt.changed)
			}
			again, changed, err := EditFstab(got, tt.entry)
			if err != nil || changed || !bytes.Equal(again, got) {
				t.Errorf("second edit changed %q to %q (%v)", got, again, err)
			}
		})
	}
}

// A line of another filesystem for the mount point is never replaced: the
// edit fails, names the line, and returns old as it was.
func TestEditFstabRefusesForeignLines(t *testing.T) {
	root := "UUID=1234-abcd / ext4 errors=remount-ro 0 1\n"
	tests := []struct {
		name, old string
		entry     Entry
		wantErr   string
	}{
		{"root filesystem", "# static\n" + root, Entry{Source: "srv:/x", MountPoint: "/", FSType: "nfs", Options: "defaults"},
			`line 2 mounts UUID=1234-abcd (ext4) on /, which phoenix does not replace: only NFS lines and lines it wrote (option x-phoenix) are its own: "UUID=1234-abcd / ext4 errors=remount-ro 0 1"`},
		{"root filesystem spelled with a slash more", "UUID=1 // ext4 defaults 0 1\r\n", Entry{Source: "srv:/x", MountPoint: "/", FSType: "nfs", Options: "defaults"},
			`line 1 mounts UUID=1 (ext4) on //, which phoenix does not replace: only NFS lines and lines it wrote (option x-phoenix) are its own: "UUID=1 // ext4 defaults 0 1"`},
		{"a disk after an NFS line for the same mount point", root + dataLine + "\n/dev/sdb1 /mnt/data ext4 defaults 0 2\n", data,
			`line 3 mounts /dev/sdb1 (ext4) on /mnt/data, which phoenix does not replace: only NFS lines and lines it wrote (option x-phoenix) are its own: "/dev/sdb1 /mnt/data ext4 defaults 0 2"`},
		{"efi partition", "UUID=AB-CD /boot/efi vfat umask=0077 0 1\n", Entry{Source: "srv:/x", MountPoint: "/boot/efi/", FSType: "nfs", Options: "defaults"},
			`line 1 mounts UUID=AB-CD (vfat) on /boot/efi, which phoenix does not replace`},
		{"an option that only starts like the marker", "/dev/sdc /mnt/data xfs x-phoenix2 0 0\n", data,
			`line 1 mounts /dev/sdc (xfs) on /mnt/data`},
		{"cifs share", "//fs/share /mnt/data cifs credentials=/root/.smb 0 0\n", data,
			`line 1 mounts //fs/share (cifs) on /mnt/data`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed, err := EditFstab([]byte(tt.old), tt.entry)
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("error %v\nwant %s", err, tt.wantErr)
			}
			if changed || string(got) != tt.old {
				t.Errorf("old changed to %q (changed=%v)", got, changed)
			}
		})
	}
}

func FuzzEditFstab(f *testing.F) {
	f.Add([]byte("UUID=1 / ext4 defaults 0 1\n"+dataLine+"\n"), "10.0.0.2:/export/8101", "/mnt/data", "defaults")
	f.Add([]byte("# c\n\n10.0.0.9:/x /mnt/data nfs ro\r\n"+dataLine), "srv:/a b", "/mnt/da ta/", "rw,nofail")
	f.Add([]byte(`a\040b /mnt/my\040data nfs defaults 0 0`+"\n\\\n#\n  \t\n"), `s\rv`, "/mnt/my data", "#x")
	f.Add([]byte("UUID=1 / ext4 defaults 0 1\n/x /mnt/data none bind,x-phoenix\n"), "srv:/x", "/", "x-phoenix")
	f.Add([]byte("/x /mnt/data none bind,x-phoenix 0 0\n"), "srv:/x", "/mnt/data", "ro,x-phoenix,x-phoenix2")
	f.Fuzz(func(t *testing.T, old []byte, source, mountPoint, options string) {
		e := Entry{Source: source, MountPoint: mountPoint, FSType: "nfs", Options: options}
		// The task never writes empty fields; an empty field would shift the others.
		if e.Source == "" {
			e.Source = "none"
		}
		if e.MountPoint == "" {
			e.MountPoint = "/mnt"
		}
		if e.Options == "" {
			e.Options = "defaults"
		}
		got, changed, err := EditFstab(old, e)
		foreign := false
		for _, l := range splitLines(old) {
			if f, ok := parseFstabLine(l); ok && sameMountPoint(f[1], e.MountPoint) && !replaceable(f) {
				foreign = true
			}
		}
		if foreign != (err != nil) {
			t.Fatalf("a line of another filesystem: %v, error: %v, in %q", foreign, err, old)
		}
		if err != nil {
			if changed || !bytes.Equal(got, old) {
				t.Fatalf("refused but changed: %q → %q", old, got)
			}
			return
		}
		if !changed && !bytes.Equal(got, old) {
			t.Fatalf("unchanged but different: %q → %q", old, got)
		}

		// Idempotent.
		again, changed2, err := EditFstab(got, e)
		if err != nil || changed2 || !bytes.Equal(again, got) {
			t.Fatalf("not idempotent: %q → %q → %q (%v)", old, got, again, err)
		}

		// Exactly one line for the mount point, and it is the entry, marked.
		var mine []string
		for _, l := range splitLines(got) {
			if f, ok := parseFstabLine(l); ok && sameMountPoint(f[1], e.MountPoint) {
				mine = append(mine, string(l))
				if f != e.marked().fields() || !hasOption(f[3], Marker) {
					t.Fatalf("line %q parses to %q, want %q", l, f, e.marked().fields())
				}
			}
		}
		if len(mine) != 1 {
			t.Fatalf("%d lines for %q in %q", len(mine), e.MountPoint, got)
		}

		// Every other line kept byte for byte, in order (the last one may
		// have gained its newline).
		var others []string
		for _, l := range splitLines(old) {
			if f, ok := parseFstabLine(l); !ok || !sameMountPoint(f[1], e.MountPoint) {
				others = append(others, string(l))
			}
		}
		var kept []string
		for _, l := range splitLines(got) {
			if string(l) != mine[0] {
				kept = append(kept, string(l))
			}
		}
		if len(kept) != len(others) {
			t.Fatalf("other lines %q became %q", others, kept)
		}
		for i := range others {
			if kept[i] != others[i] && kept[i] != others[i]+"\n" && kept[i] != others[i]+"\r\n" {
				t.Fatalf("line %d: %q became %q", i, others[i], kept[i])
			}
		}
	})
}
