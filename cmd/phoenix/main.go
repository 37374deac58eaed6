// Command phoenix provisions QEMU VMs on Proxmox VE from one declarative
// file, agentless over SSH.
package main

import "os"

func main() { os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr)) }
