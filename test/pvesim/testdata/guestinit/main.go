// Command guestinit is PID 1 of the image the Docker backend test builds:
// it exits on SIGTERM like a guest init that shuts down, or, with
// IGNORE_TERM=1, ignores it (a guest that hangs on shutdown).
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
	for {
		time.Sleep(time.Hour)
	}
}
