package inventory

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Vars returns the VM as the generic map playbooks read with ${vm.x}: its
// JSON form (defaults merged), with Extra keys added. Integers are int,
// other numbers float64. user_config.password is the Secret itself, so
// tasks.Decode can reveal it to the task while every printer masks it.
//
// It panics only if the VM holds invalid raw JSON, which a VM from
// LoadConfig cannot (every raw value was read from a valid file).
func (vm *VM) Vars() map[string]any {
	b, err := json.Marshal(vm)
	if err != nil {
		panic(fmt.Sprintf("inventory: vm %d: vars: %v", vm.VMID, err))
	}
	m, _ := decodeNumbers(b).(map[string]any)
	for k, raw := range vm.Extra {
		if _, known := m[k]; !known {
			m[k] = decodeNumbers(raw)
		}
	}
	if vm.UserConfig.Password != "" {
		if uc, ok := m["user_config"].(map[string]any); ok {
			uc["password"] = vm.UserConfig.Password
		}
	}
	return m
}

// decodeNumbers unmarshals JSON turning integral numbers into int, so
// ${vm.vmid} reads 8101, never 8101.0 or 8.101e+03. Invalid JSON gives nil.
func decodeNumbers(b []byte) any {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return nil
	}
	return intNumbers(v)
}

func intNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return int(i)
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = intNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = intNumbers(e)
		}
	}
	return v
}
