package main

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// VersionCmd prints the module version and the VCS revision it was built
// from, as the Go toolchain stamped them into the binary.
type VersionCmd struct{}

func (VersionCmd) Run(a *App) error {
	bi, _ := debug.ReadBuildInfo()
	_, err := fmt.Fprintln(a.Stdout, versionLine(bi))
	return err
}

// versionLine is "phoenix v1.2.0 (rev 0123456789ab, 2026-11-30T10:00:00Z,
// modified; go1.26.8)"; parts the build did not record are left out.
func versionLine(bi *debug.BuildInfo) string {
	if bi == nil {
		return "phoenix (unknown version: built without module information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev []string
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if r := settings["vcs.revision"]; r != "" {
		rev = append(rev, "rev "+r[:min(12, len(r))])
	}
	if t := settings["vcs.time"]; t != "" {
		rev = append(rev, t)
	}
	if settings["vcs.modified"] == "true" {
		rev = append(rev, "modified")
	}
	details := strings.Join(rev, ", ")
	if bi.GoVersion != "" {
		details = strings.TrimPrefix(details+"; "+bi.GoVersion, "; ")
	}
	return fmt.Sprintf("phoenix %s (%s)", v, details)
}
