package main

import (
	"errors"

	"github.com/phoenix-hv/phoenix/playbooks"
	"github.com/phoenix-hv/phoenix/runner"
	"github.com/phoenix-hv/phoenix/tasks/pve"
)

// RunFlags are the flags of every command that runs a playbook.
type RunFlags struct {
	DryRun           bool     `help:"Check every step and change nothing."`
	Diff             bool     `help:"Show the diff of each change."`
	DetailedExitcode bool     `help:"With --dry-run: exit 2 when changes are pending."`
	Forks            int      `help:"VMs worked on in parallel." default:"5"`
	FeatureDir       []string `help:"Directory with feature scripts NAME.sh, searched before the built-in ones (repeatable)." type:"existingdir" placeholder:"DIR" predictor:"dir"`
}

// BuildFlags are the flags of the commands that create VMs.
type BuildFlags struct {
	WithDeps        bool `name:"with-deps" help:"Also run the VMs' dependencies (clone sources such as their template, dependencies), first."`
	RebuildTemplate bool `name:"rebuild-template" help:"Rebuild a template whose image changed (template_image_sha256); refused while linked clones of it exist."`
	Migrate         bool `help:"Move a VM that lives on another node of the cluster than its config places it on (offline: shut down, qm migrate, started again by the create steps)."`
}

// RunCmd runs any playbook.
type RunCmd struct {
	Playbook string `arg:"" help:"Built-in playbook (create, delete, start, stop) or a YAML file." predictor:"playbook"`
	VMID     []int  `name:"vmid" help:"VM to run on (repeatable)." xor:"select" required:"" predictor:"vmid"`
	All      bool   `help:"Run on every VM of the config." xor:"select" required:""`
	RunFlags
	BuildFlags
}

func (c *RunCmd) Run(a *App) error {
	return a.runPlaybook(c.Playbook, c.VMID, c.All, c.RunFlags, c.BuildFlags)
}

// selection is the VMs a built-in verb works on: VMIDs, or --all.
type selection struct {
	VMIDs []int `arg:"" optional:"" name:"vmid" help:"VMs to work on." predictor:"vmid"`
	All   bool  `help:"Every VM of the config, in dependency order."`
}

// Validate is kong's check after parsing: exactly one way of choosing.
func (s *selection) Validate() error {
	switch {
	case s.All && len(s.VMIDs) > 0:
		return errors.New("give VMIDs or --all, not both")
	case !s.All && len(s.VMIDs) == 0:
		return errors.New("no VM given: name them (8101 8102) or use --all")
	}
	return nil
}

// vmids is the arguments and flags of the built-in verbs that run a
// playbook.
type vmids struct {
	selection
	RunFlags
}

type CreateCmd struct {
	vmids
	BuildFlags
}
type DeleteCmd struct{ vmids }
type StartCmd struct{ vmids }
type StopCmd struct{ vmids }

func (c *CreateCmd) Run(a *App) error {
	return a.runPlaybook("create", c.VMIDs, c.All, c.RunFlags, c.BuildFlags)
}
func (c *DeleteCmd) Run(a *App) error {
	return a.runPlaybook("delete", c.VMIDs, c.All, c.RunFlags, BuildFlags{})
}
func (c *StartCmd) Run(a *App) error {
	return a.runPlaybook("start", c.VMIDs, c.All, c.RunFlags, BuildFlags{})
}
func (c *StopCmd) Run(a *App) error {
	return a.runPlaybook("stop", c.VMIDs, c.All, c.RunFlags, BuildFlags{})
}

// PlanCmd is create with --dry-run --diff.
type PlanCmd struct {
	selection
	Diff             bool     `help:"Show the diff of each change (always on: plan shows them anyway)."`
	DetailedExitcode bool     `help:"Exit 2 when changes are pending."`
	Forks            int      `help:"VMs checked in parallel." default:"5"`
	FeatureDir       []string `help:"Directory with feature scripts NAME.sh (repeatable)." type:"existingdir" placeholder:"DIR" predictor:"dir"`
	BuildFlags
}

func (c *PlanCmd) Run(a *App) error {
	return a.runPlaybook("create", c.VMIDs, c.All, RunFlags{
		DryRun: true, Diff: true, DetailedExitcode: c.DetailedExitcode, Forks: c.Forks, FeatureDir: c.FeatureDir,
	}, c.BuildFlags)
}

func (a *App) runPlaybook(name string, ids []int, all bool, f RunFlags, b BuildFlags) error {
	pb, err := playbooks.Load(name)
	if err != nil {
		return err
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	// A feature that cannot run fails before anything runs, naming its place.
	if runsFeatures(pb) {
		vms, _ := runner.SelectVMs(cfg, ids, all, b.WithDeps) // an unknown vmid selects nothing here; the runner reports it
		if err := featureProblems(cfg, vms, f.FeatureDir); err != nil {
			return err
		}
	}
	inv, err := a.loadInventory()
	if err != nil {
		return err
	}
	w := &wiring{inv: inv, hostKeys: a.HostKeys}
	obs, done := a.observer()
	sum, err := runner.Run(a.Ctx, runner.Options{
		Config: cfg, Inventory: inv, Playbook: pb, VMIDs: ids, All: all, WithDeps: b.WithDeps,
		Forks: f.Forks, DryRun: f.DryRun, Diff: f.Diff, RebuildTemplates: b.RebuildTemplate, Migrate: b.Migrate,
		Observer: obs, Registry: registry(),
		Connect: w.connectNode, GuestFor: w.guestFor, ReadCluster: pve.ReadCluster,
		FeatureDirs: f.FeatureDir,
	})
	done()
	a.code = sum.ExitCode(f.DetailedExitcode)
	if sum.Interrupted {
		// Each stopped step is in the events; the last word is why.
		return reported{errors.New("interrupted")}
	}
	if err != nil && len(sum.VMs) > 0 {
		return reported{err}
	}
	return err
}
