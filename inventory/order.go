package inventory

import (
	"fmt"
	"slices"
	"strconv"
)

// DependsOn returns the vmids this VM waits for: its clone source and its
// numeric dependencies, only those defined in the same file, without
// repeats. Set by LoadConfig.
func (vm *VM) DependsOn() []int { return slices.Clone(vm.deps) }

// dependsOn computes DependsOn from the VMs of c.
func (c *Config) dependsOn(vm *VM) []int {
	var out []int
	add := func(id int) {
		if id != 0 && c.Lookup(id) != nil && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	add(vm.CloneFromVMID)
	for _, d := range vm.Dependencies {
		if n, err := strconv.Atoi(d); err == nil {
			add(n)
		}
	}
	return out
}

// Order returns the VMs to run, dependencies first: all VMs in file order
// when all is set, else the VMs named by vmids plus everything they depend
// on (as the original CLI does), in the order given.
func (c *Config) Order(vmids []int, all bool) ([]*VM, error) {
	roots := vmids
	if all {
		roots = make([]int, len(c.VMs))
		for i, vm := range c.VMs {
			roots[i] = vm.VMID
		}
	}
	var out []*VM
	done := map[int]bool{}
	var path []int // the chain being visited, to name a cycle
	var visit func(id int) error
	visit = func(id int) error {
		if done[id] {
			return nil
		}
		if i := slices.Index(path, id); i >= 0 {
			return fmt.Errorf("%s: dependency cycle: %s", c.File, joinIDs(append(slices.Clone(path[i:]), id), " -> "))
		}
		vm := c.Lookup(id)
		if vm == nil {
			return fmt.Errorf("%s: vm %d is not defined (defined: %s)", c.File, id, idList(c))
		}
		path = append(path, id)
		for _, dep := range c.dependsOn(vm) {
			if err := visit(dep); err != nil {
				return err
			}
		}
		path = path[:len(path)-1]
		done[id] = true
		out = append(out, vm)
		return nil
	}
	for _, id := range roots {
		if err := visit(id); err != nil {
			return nil, err
		}
	}
	return out, nil
}
