package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/muesli/termenv"

	"github.com/phoenix-hv/phoenix/console"
	"github.com/phoenix-hv/phoenix/inventory"
	"github.com/phoenix-hv/phoenix/placement"
	"github.com/phoenix-hv/phoenix/playbooks"
	"github.com/phoenix-hv/phoenix/runner"
	"github.com/phoenix-hv/phoenix/tasks/pve"
)

// StatusCmd shows the config's VMs as their nodes see them.
type StatusCmd struct {
	VMIDs      []int    `arg:"" optional:"" name:"vmid" help:"VMs to show (default: every VM of the config)." predictor:"vmid"`
	Check      bool     `help:"Also plan create for each VM (a dry run: nothing is changed) and list the steps it would change."`
	Forks      int      `help:"VMs checked in parallel with --check." default:"5"`
	FeatureDir []string `help:"Directory with feature scripts NAME.sh, for --check (repeatable)." type:"existingdir" placeholder:"DIR" predictor:"dir"`
}

// vmStatus is one VM in phoenix status (and its JSON).
type vmStatus struct {
	VMID int    `json:"vmid"`
	Name string `json:"name"`
	// Node is where the VM lives (its home when it does not exist); Home is
	// where the config places it: they differ for a VM that drifted.
	Node string `json:"node"`
	Home string `json:"home"`
	// Exists, Status ("running", "stopped", …; "missing" when it does not
	// exist, "unknown" when the node could not say) and Template are the
	// node's; Template is the config's for a VM that does not exist.
	Exists   bool   `json:"exists"`
	Status   string `json:"status"`
	Template bool   `json:"template"`
	// Pending lists the steps a create would change (with --check; empty:
	// in sync).
	Pending *[]string `json:"pending,omitempty"`
	Error   string    `json:"error,omitempty"`
}

func (c *StatusCmd) Run(a *App) error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	inv, err := a.loadInventory()
	if err != nil {
		return err
	}
	vms := cfg.VMs
	if len(c.VMIDs) > 0 {
		vms = nil
		for _, id := range c.VMIDs {
			vm := cfg.Lookup(id)
			if vm == nil {
				return fmt.Errorf("%s: vm %d is not defined", cfg.File, id)
			}
			vms = append(vms, vm)
		}
	}
	// As for plan: a feature that cannot run fails before anything connects.
	if c.Check {
		if err := featureProblems(cfg, vms, c.FeatureDir); err != nil {
			return err
		}
	}
	rows := make([]vmStatus, len(vms))
	var errs []error
	// fail marks a row unknown; its error is reported once per VM, or once
	// per node for a node that failed them all.
	fail := func(i int, err error) {
		rows[i].Status, rows[i].Error = "unknown", err.Error()
		errs = append(errs, fmt.Errorf("vm %d: %w", rows[i].VMID, err))
	}
	failNode := func(idx []int, err error) {
		for _, i := range idx {
			rows[i].Status, rows[i].Error = "unknown", err.Error()
		}
		errs = append(errs, err)
	}
	w := &wiring{inv: inv, hostKeys: a.HostKeys}
	nodes := w.pool()
	defer nodes.close()
	placer := nodes.placer()
	byNode := map[string][]int{} // node name → indexes into rows
	for i, vm := range vms {
		rows[i] = vmStatus{VMID: vm.VMID, Name: vm.Name, Template: vm.IsTemplate}
		home, err := inv.Home(cfg, vm)
		if err != nil {
			fail(i, err)
			continue
		}
		rows[i].Home = home.Name
		n, _, err := placer.Place(a.Ctx, home, vm)
		var conflict *placement.Conflict
		switch {
		case errors.As(err, &conflict):
			fail(i, err)
			continue
		case err != nil:
			n = home // its cluster could not be read: readStates says why, once
		}
		rows[i].Node = n.Name
		byNode[n.Name] = append(byNode[n.Name], i)
	}
	for _, name := range slices.Sorted(maps.Keys(byNode)) {
		a.readStates(nodes, inv.Nodes[name], byNode[name], rows, fail, failNode)
	}
	if c.Check {
		if err := c.check(a, cfg, inv, w, rows, fail); err != nil {
			return err
		}
	}
	if err := a.printStatus(rows, c.Check); err != nil {
		return err
	}
	if err := errors.Join(errs...); err != nil {
		return reported{err}
	}
	return nil
}

// readStates fills the rows of one node's VMs from one round trip.
func (a *App) readStates(nodes *pool, n *inventory.Node, idx []int, rows []vmStatus,
	fail func(int, error), failNode func([]int, error)) {
	node, err := nodes.get(a.Ctx, n)
	if err != nil {
		failNode(idx, err) // names the node
		return
	}
	ids := make([]int, len(idx))
	for j, i := range idx {
		ids[j] = rows[i].VMID
	}
	states, errs, err := pve.ReadStates(a.Ctx, node, ids)
	if err != nil {
		failNode(idx, fmt.Errorf("node %s: %w", n.Name, err))
		return
	}
	for _, i := range idx {
		st := states[rows[i].VMID]
		switch {
		case st == nil:
			fail(i, errs[rows[i].VMID])
		case !st.Exists:
			rows[i].Status = "missing"
		default:
			rows[i].Exists, rows[i].Status, rows[i].Template = true, st.Status, st.Template()
		}
	}
}

// check runs create as a dry run and records each VM's pending steps.
func (c *StatusCmd) check(a *App, cfg *inventory.Config, inv *inventory.Inventory, w *wiring, rows []vmStatus, fail func(int, error)) error {
	pb, err := playbooks.Load("create")
	if err != nil {
		return err
	}
	index := map[int]int{}
	ids := make([]int, len(rows))
	for i, r := range rows {
		index[r.VMID], ids[i] = i, r.VMID
		if r.Error == "" {
			rows[i].Pending = &[]string{}
		}
	}
	_, _ = runner.Run(a.Ctx, runner.Options{
		Config: cfg, Inventory: inv, Playbook: pb, VMIDs: ids, Forks: c.Forks, DryRun: true,
		Registry: registry(), Connect: w.connectNode, GuestFor: w.guestFor, ReadCluster: pve.ReadCluster, FeatureDirs: c.FeatureDir,
		Observer: runner.ObserverFunc(func(e runner.Event) {
			i, ok := index[e.VMID]
			switch {
			case !ok || rows[i].Pending == nil: // its state is unknown already
			case e.Type == runner.EventTaskEnd && e.Status == runner.StatusChanged:
				*rows[i].Pending = append(*rows[i].Pending, e.Task)
			case e.Type == runner.EventVMEnd && e.Error != "":
				rows[i].Pending = nil
				fail(i, errors.New(e.Error))
			}
		}),
	})
	return nil
}

// printStatus writes the rows as JSON, or as a table: coloured and fitted
// on a terminal, plain otherwise.
func (a *App) printStatus(rows []vmStatus, checked bool) error {
	if a.Output == "json" {
		b, err := json.MarshalIndent(rows, "", "  ")
		if err != nil {
			return err
		}
		_, err = a.Stdout.Write(append(b, '\n'))
		return err
	}
	p, width := console.Palette{Profile: termenv.Ascii}, 0
	if t, ok := console.Detect(a.Stdout, console.OSEnviron{}, a.NoColor); ok {
		p = console.Palette{Profile: t.Profile}
		width, _ = t.Size()
	}
	last := "NOTE"
	if checked {
		last = "PENDING"
	}
	t := console.Table{Header: []string{"VMID", "NAME", "NODE", "STATUS", "TEMPLATE", last}}
	for _, r := range rows {
		status := console.Cell{Text: r.Status}
		switch r.Status {
		case "running":
			status.Style = p.Good
		case "missing":
			status.Style = p.Warn
		case "unknown":
			status.Style = p.Bad
		default:
			status.Style = p.Dim
		}
		note := console.Cell{}
		switch {
		case r.Error != "":
			note = console.Cell{Text: strings.SplitN(r.Error, "\n", 2)[0], Style: p.Bad}
		case r.Node != r.Home && r.Pending == nil:
			note = console.Cell{Text: "drift: the config places it on " + r.Home, Style: p.Warn}
		case r.Pending != nil && len(*r.Pending) == 0:
			note = console.Cell{Text: "none", Style: p.Good}
		case r.Pending != nil:
			note = console.Cell{Text: fmt.Sprintf("%d: %s", len(*r.Pending), strings.Join(*r.Pending, ", ")), Style: p.Warn}
		}
		t.Rows = append(t.Rows, []console.Cell{
			{Text: fmt.Sprint(r.VMID)}, {Text: console.Clean(r.Name)}, {Text: r.Node}, status, {Text: yesNo(r.Template)}, note,
		})
	}
	for _, l := range t.Lines(p, width) {
		if _, err := fmt.Fprintln(a.Stdout, l); err != nil {
			return err
		}
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
