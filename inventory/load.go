package inventory

import "errors"

// LoadConfig reads, schema-validates and checks phoenix_vm_configs.json.
// Errors name the file, the JSON pointer and line:column.
// (Contract stub: replaced by the loader.)
func LoadConfig(path string) (*Config, error) { return nil, errors.New("not implemented") }

// LoadInventory reads inventory.yml and resolves nodes through ~/.ssh/config
// (sshConfig is the ssh_config path; "" means ~/.ssh/config).
// (Contract stub: replaced by the loader.)
func LoadInventory(path, sshConfig string) (*Inventory, error) {
	return nil, errors.New("not implemented")
}
