package main

import "strings"

// examples are what each verb's --help shows under its description.
var examples = map[string][]string{
	"run": {
		"phoenix run create --vmid 8101 --vmid 8102",
		"phoenix run playbooks/create.yml --all --dry-run --diff",
		"phoenix run ./site.yml --vmid 8101 --feature-dir ./features   # your own playbook and feature scripts",
	},
	"create": {
		"phoenix create 8101",
		"phoenix create 8101 8102 --forks 2",
		"phoenix create --all --dry-run --detailed-exitcode   # exit 2 when something would change",
	},
	"delete": {
		"phoenix delete 8101 --dry-run   # what would be destroyed",
		"phoenix delete 8101 8102",
	},
	"start": {"phoenix start 8101", "phoenix start --all"},
	"stop":  {"phoenix stop 8101", "phoenix stop --all --forks 10"},
	"plan": {
		"phoenix plan 8101",
		"phoenix plan --all --detailed-exitcode   # exit 2 when something would change",
	},
	"status": {
		"phoenix status",
		"phoenix status 8101 8102 --check   # and the steps a create would change",
		"phoenix status --output json",
	},
	"render": {
		"phoenix render create --vmid 8101",
		"phoenix render ./site.yml --vmid 8101 --output json",
	},
	"validate": {
		"phoenix validate",
		"phoenix validate --config vms.json --inventory inventory.yml",
		"phoenix validate --print-schema > phoenix.schema.json",
	},
	"exec": {
		"phoenix exec 8101 -- cloud-init status --long",
		"phoenix exec 8101 -- sh -c 'findmnt -t nfs,nfs4'",
	},
	"version": {"phoenix version"},
	"completion": {
		"source <(phoenix completion bash)         # in ~/.bashrc",
		"source <(phoenix completion zsh)          # in ~/.zshrc",
		"phoenix completion fish | source          # in ~/.config/fish/config.fish",
	},
}

// helpFor is kong's detailed help of a verb: its examples.
func helpFor(verb string) string {
	return "Examples:\n  " + strings.Join(examples[verb], "\n  ")
}

func (RunCmd) Help() string        { return helpFor("run") }
func (CreateCmd) Help() string     { return helpFor("create") }
func (DeleteCmd) Help() string     { return helpFor("delete") }
func (StartCmd) Help() string      { return helpFor("start") }
func (StopCmd) Help() string       { return helpFor("stop") }
func (PlanCmd) Help() string       { return helpFor("plan") }
func (StatusCmd) Help() string     { return helpFor("status") }
func (RenderCmd) Help() string     { return helpFor("render") }
func (ValidateCmd) Help() string   { return helpFor("validate") }
func (ExecCmd) Help() string       { return helpFor("exec") }
func (VersionCmd) Help() string    { return helpFor("version") }
func (CompletionCmd) Help() string { return helpFor("completion") }
