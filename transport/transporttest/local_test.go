package transporttest_test

import (
	"testing"

	"github.com/phoenix-hv/phoenix/transport"
	"github.com/phoenix-hv/phoenix/transport/local"
	"github.com/phoenix-hv/phoenix/transport/transporttest"
)

func TestLocalShell(t *testing.T) {
	transporttest.Run(t, func(*testing.T) transport.Transport { return local.Shell{} })
}
