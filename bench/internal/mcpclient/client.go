// Package mcpclient is the bare-bones MCP client of the benchmarks: raw
// JSON-RPC over Streamable HTTP on a keep-alive connection, so that what is
// measured is the server, not a client library.
package mcpclient

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
)

// Client posts JSON-RPC messages on one MCP session.
type Client struct {
	HTTP    *http.Client
	URL     string // the /mcp endpoint
	Token   string
	Session string
	auth    string
}

// Initialize opens the session.
func (c *Client) Initialize() error {
	_, h, status, err := c.post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`, "")
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("initialize: HTTP %d", status)
	}
	c.Session = h.Get("Mcp-Session-Id")
	return nil
}

// Post sends one message on the session and returns the body and status.
func (c *Client) Post(body string) ([]byte, int, error) {
	b, _, status, err := c.post(body, c.Session)
	return b, status, err
}

// Close ends the session (DELETE).
func (c *Client) Close() error {
	req, _ := http.NewRequest(http.MethodDelete, c.URL, nil)
	c.headers(req, c.Session)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil
}

func (c *Client) post(body, session string) ([]byte, http.Header, int, error) {
	req, _ := http.NewRequest(http.MethodPost, c.URL, bytes.NewBufferString(body))
	c.headers(req, session)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.Header, resp.StatusCode, err
}

func (c *Client) headers(req *http.Request, session string) {
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	if c.Token != "" {
		if c.auth == "" { // built once, as a real client keeps its header
			c.auth = "Bearer " + c.Token
		}
		req.Header.Set("Authorization", c.auth)
	}
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
}
