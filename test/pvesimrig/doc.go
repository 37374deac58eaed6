// Package pvesimrig holds the end-to-end tests of pvesim on the rig: real
// qm/pvesh calls over SSH (transport/ssh) against the simulated node, with
// guest state checked through docker exec. It has no code of its own.
package pvesimrig
