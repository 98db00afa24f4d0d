package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
)

// errTooLarge is the read error of an upstream message past
// max_result_bytes: the reader stops there, so that an upstream cannot make
// toolgate hold more than that of one message.
var errTooLarge = errors.New("upstream message over max_result_bytes")

// capReader reads at most max bytes of each message: of each event of an
// SSE stream (the lines up to a blank one, as mcp-go reads them: split at
// line feeds, a line of carriage returns alone is blank), of each line of
// stdio's newline-delimited JSON-RPC, or of a whole JSON body.
type capReader struct {
	r      io.Reader
	max    int64
	mode   capMode
	n      int64 // bytes of the current message so far
	blank  bool  // the current line has only carriage returns so far
	inLine bool  // the current line has begun
	// tripped is told when a message went over (nil: nobody asks).
	tripped *atomic.Bool
}

type capMode int

const (
	capWhole capMode = iota // one message: the whole body
	capEvent                // text/event-stream: each event
	capLine                 // stdio: each line
)

func (c *capReader) Read(p []byte) (int, error) {
	if c.n > c.max {
		return 0, errTooLarge
	}
	n, err := c.r.Read(p)
	for off := 0; off < n; {
		line := p[off:n]
		end := bytes.IndexByte(line, '\n')
		if end >= 0 {
			line = line[:end]
		}
		if !c.inLine {
			c.inLine, c.blank = true, true
		}
		if c.blank && len(bytes.Trim(line, "\r")) > 0 {
			c.blank = false
		}
		if c.n += int64(len(line)); c.n > c.max {
			if c.tripped != nil {
				c.tripped.Store(true)
			}
			return off, errTooLarge
		}
		if end < 0 {
			break
		}
		// A line ends: for stdio, the message; for SSE, the event if
		// the line is blank.
		c.inLine = false
		if c.mode == capLine || c.mode == capEvent && c.blank {
			c.n = 0
		} else {
			c.n++
		}
		off += end + 1
	}
	return n, err
}

// capBodies bounds every response body read from an upstream over
// Streamable HTTP. The call a body answers learns of a cut through its
// request's context (inflight.tooLarge).
type capBodies struct {
	next http.RoundTripper
	max  int64
}

func (t capBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	mode := capWhole
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		mode = capEvent
	}
	c := &capReader{r: resp.Body, max: t.max, mode: mode}
	if f, ok := r.Context().Value(inflightKey{}).(*inflight); ok {
		c.tripped = &f.tooLarge
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{c, resp.Body}
	return resp, nil
}

// stdioProcess is a stdio upstream's process, with mcp-go's stdio
// transport reading its output through a capReader: mcp-go reads each line
// whole, however long, so the process is started here, not by mcp-go.
type stdioProcess struct {
	*transport.Stdio
	cmd      *exec.Cmd
	stdout   *os.File // toolgate's end of the process's stdout
	tooLarge atomic.Bool
	exited   chan struct{}
}

// newStdio prepares the process of command; Start starts it.
func newStdio(command, env []string, maxLine int64, log *slog.Logger) (*stdioProcess, error) {
	cmd := exec.Command(command[0], command[1:]...) // lives until the session closes, not a request
	cmd.Env = env
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd.Stdin, cmd.Stdout = inR, outW // stderr: the null device
	p := &stdioProcess{cmd: cmd, stdout: outR, exited: make(chan struct{})}
	p.Stdio = transport.NewIO(&capReader{r: outR, max: maxLine, mode: capLine, tripped: &p.tooLarge}, &stdin{inW, p}, nil)
	transport.WithCommandLogger(log)(p.Stdio)
	return p, nil
}

// Start starts the process, then mcp-go's reading of its output.
func (p *stdioProcess) Start(ctx context.Context) error {
	err := p.cmd.Start()
	// The process has its ends of the pipes; toolgate keeps its own.
	p.cmd.Stdin.(*os.File).Close()
	p.cmd.Stdout.(*os.File).Close()
	if err != nil {
		p.stdout.Close()
		_ = p.Stdio.Close()
		return err
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	return p.Stdio.Start(ctx)
}

// stop ends the process as mcp-go's stdio transport does: its input closed,
// then SIGTERM after 2 s, then SIGKILL after 3 s more.
func (p *stdioProcess) stop() {
	if p.cmd.Process == nil {
		return
	}
	for _, step := range []struct {
		wait time.Duration
		then func()
	}{{2 * time.Second, func() { _ = p.cmd.Process.Signal(syscall.SIGTERM) }}, {3 * time.Second, func() { _ = p.cmd.Process.Kill() }}} {
		select {
		case <-p.exited:
			p.stdout.Close()
			return
		case <-time.After(step.wait):
			step.then()
		}
	}
	<-p.exited
	p.stdout.Close()
}

// stdin is the process's input; closing it, as mcp-go's Close does, stops
// the process.
type stdin struct {
	*os.File
	p *stdioProcess
}

func (s *stdin) Close() error {
	err := s.File.Close()
	s.p.stop()
	return err
}
