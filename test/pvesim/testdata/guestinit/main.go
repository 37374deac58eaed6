// Command guestinit is PID 1 of the image the Docker backend test builds:
// it exits on SIGTERM like a guest init that shuts down, or, with
// IGNORE_TERM=1, ignores it (a guest that hangs on shutdown). It prints
// "ready" once its signal disposition is set.
package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if os.Getenv("IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		go func() {
			<-term
			os.Exit(0)
		}()
	}
	// PID 1 gets no signal it has no handler for: the test waits for this
	// line before it sends SIGTERM, or the signal could be lost on a busy machine.
	os.Stdout.WriteString("ready\n")
	for {
		time.Sleep(time.Hour)
	}
}
