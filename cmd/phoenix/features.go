package main

import (
	"slices"

	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/playbooks"
)

// featureProblems is a config error naming, where the config names it,
// every feature of vms that cannot run: no script NAME.sh (in dirs, or
// built in), or a config that lacks what it needs (trusted_ca without
// trusted_ca_files). nil when all can run.
func featureProblems(cfg *inventory.Config, vms []*inventory.VM, dirs []string) error {
	var problems []inventory.Problem
	for _, vm := range vms {
		for i, name := range vm.Features {
			if _, err := playbooks.Feature(name, dirs); err != nil {
				problems = append(problems, vm.FeatureProblem(i, err.Error()))
			} else if need := vm.FeatureNeeds(name); need != "" {
				problems = append(problems, vm.FeatureProblem(i, need))
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return &inventory.ConfigError{File: cfg.File, Problems: problems}
}

// runsFeatures reports whether pb has a feature step.
func runsFeatures(pb *playbooks.Playbook) bool {
	return slices.ContainsFunc(pb.Tasks, func(s playbooks.Step) bool { return s.Kind == "feature" })
}
