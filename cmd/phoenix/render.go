package main

import (
	"encoding/json"
	"fmt"

	"github.com/goccy/go-yaml"

	"github.com/phoenix-hv/phoenix/playbooks"
)

// RenderCmd prints a playbook resolved for one VM.
type RenderCmd struct {
	Playbook string `arg:"" help:"Built-in playbook (create, delete, start, stop) or a YAML file." predictor:"playbook"`
	VMID     int    `name:"vmid" required:"" help:"The VM to render for." predictor:"vmid"`
}

func (c *RenderCmd) Run(a *App) error {
	pb, err := playbooks.Load(c.Playbook)
	if err != nil {
		return err
	}
	vm, err := a.loadVM(c.VMID)
	if err != nil {
		return err
	}
	steps, err := playbooks.Render(pb, vm, registry())
	if err != nil {
		return err
	}
	// Secrets are inventory.Secret values: they print as "(sensitive)".
	var out []byte
	if a.Output == "json" {
		out, err = json.MarshalIndent(steps, "", "  ")
		out = append(out, '\n')
	} else {
		out, err = yaml.Marshal(steps)
	}
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	_, err = a.Stdout.Write(out)
	return err
}
