package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/playbooks"
)

// ValidateCmd checks the config, the inventory when there is one, that the
// create playbook renders for every VM, and that every feature has a script.
type ValidateCmd struct {
	PrintSchema bool     `help:"Print the JSON Schema of the config and exit."`
	FeatureDir  []string `help:"Directory with feature scripts NAME.sh, searched before the built-in ones (repeatable)." type:"existingdir" placeholder:"DIR" predictor:"dir"`
}

func (c *ValidateCmd) Run(a *App) error {
	if c.PrintSchema {
		_, err := a.Stdout.Write(inventory.Schema())
		return err
	}
	cfg, err := inventory.LoadConfig(a.Config)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(a.Stdout, "warning: %s\n", w)
	}
	pb, err := playbooks.Load("create")
	if err != nil {
		return err
	}
	reg := registry()
	var errs []error
	for _, vm := range cfg.VMs {
		if _, err := playbooks.Render(pb, vm, reg); err != nil {
			errs = append(errs, fmt.Errorf("vm %d: %w", vm.VMID, err))
		}
	}
	if err := featureProblems(cfg, cfg.VMs, c.FeatureDir); err != nil {
		errs = append(errs, err)
	}
	checked := cfg.File
	if _, err := os.Stat(a.Inventory); err == nil {
		inv, err := a.loadInventory()
		if err != nil {
			errs = append(errs, err)
		} else {
			checked += " and " + inv.File
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(a.Stdout, "%s: valid (%d VMs, %d warnings)\n", checked, len(cfg.VMs), len(cfg.Warnings))
	return nil
}
