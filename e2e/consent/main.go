// Command consent is the login and consent app of the end-to-end tests
// (e2e/run.sh): Ory Hydra sends the user agent here, and this app accepts the
// login and the consent through Hydra's admin API for scripted users, so that
// Hydra issues access tokens shaped like Auth0 RBAC tokens (a `permissions`
// array, `org_id`, `role`) with toolgate's resource URL as their audience.
// It also serves Hydra's token hook, which gives client-credentials tokens the
// permissions recorded in the client's metadata.
//
// Test only: it trusts whoever names a user. Loopback only.
//
//	consent -listen 127.0.0.1:PORT -admin http://127.0.0.1:ADMIN -audience RESOURCE -users users.json
//
// Login: the subject is the authorization request's `login_hint` (OpenID
// Connect); an unknown or missing hint rejects the login. Consent: every
// requested scope is granted except those the scripted user declines in the
// authorization request's `e2e_decline` parameter (space separated), which
// stands for a person unticking a scope on a consent screen.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// User is one scripted user: the claims its access tokens carry.
type User struct {
	Permissions []string `json:"permissions"`
	OrgID       string   `json:"org_id,omitempty"`
	Role        string   `json:"role,omitempty"`
}

type app struct {
	admin    string // Hydra's admin URL
	audience string // toolgate's resource URL
	users    map[string]User
	client   *http.Client
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (loopback)")
	admin := flag.String("admin", "", "Hydra's admin URL, e.g. http://127.0.0.1:4445")
	audience := flag.String("audience", "", "the access token audience to grant (toolgate's resource URL)")
	usersFile := flag.String("users", "", "JSON file: {\"alice\": {\"permissions\": []}, ...}")
	flag.Parse()
	if *admin == "" || *audience == "" || *usersFile == "" {
		log.Fatal("consent: -admin, -audience and -users are required")
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !isLoopback(host) {
		log.Fatalf("consent: -listen %q must be a loopback host:port", *listen)
	}
	if u, err := url.Parse(*admin); err != nil || !isLoopback(u.Hostname()) {
		log.Fatalf("consent: -admin %q must be a loopback URL", *admin)
	}
	b, err := os.ReadFile(*usersFile)
	if err != nil {
		log.Fatalf("consent: %v", err)
	}
	a := &app{admin: strings.TrimSuffix(*admin, "/"), audience: *audience, client: &http.Client{Timeout: 10 * time.Second}}
	if err := json.Unmarshal(b, &a.users); err != nil {
		log.Fatalf("consent: %s: %v", *usersFile, err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", a.login)
	mux.HandleFunc("GET /consent", a.consent)
	mux.HandleFunc("POST /token-hook", a.tokenHook)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("consent: %v", err)
	}
	log.Printf("consent: listening on http://%s (users: %d)", ln.Addr(), len(a.users))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("consent: %v", err)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// login accepts the login of the user named by login_hint.
func (a *app) login(w http.ResponseWriter, r *http.Request) {
	challenge := r.URL.Query().Get("login_challenge")
	var req struct {
		Subject     string `json:"subject"`
		Skip        bool   `json:"skip"`
		RequestURL  string `json:"request_url"`
		OIDCContext struct {
			LoginHint string `json:"login_hint"`
		} `json:"oidc_context"`
	}
	if err := a.call(http.MethodGet, "/admin/oauth2/auth/requests/login", "login_challenge", challenge, nil, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	subject := req.OIDCContext.LoginHint
	if subject == "" {
		subject = queryParam(req.RequestURL, "login_hint")
	}
	if req.Skip {
		subject = req.Subject
	}
	var redirect struct {
		RedirectTo string `json:"redirect_to"`
	}
	var err error
	if _, known := a.users[subject]; !known {
		log.Printf("consent: login rejected: unknown user %q", subject)
		err = a.call(http.MethodPut, "/admin/oauth2/auth/requests/login/reject", "login_challenge", challenge,
			map[string]any{"error": "access_denied", "error_description": fmt.Sprintf("no scripted user %q", subject)}, &redirect)
	} else {
		log.Printf("consent: login accepted: %s", subject)
		err = a.call(http.MethodPut, "/admin/oauth2/auth/requests/login/accept", "login_challenge", challenge,
			map[string]any{"subject": subject, "remember": false}, &redirect)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	http.Redirect(w, r, redirect.RedirectTo, http.StatusFound)
}

// consent grants the requested scopes (less the declined ones), toolgate's
// audience, and the user's claims in the access token.
func (a *app) consent(w http.ResponseWriter, r *http.Request) {
	challenge := r.URL.Query().Get("consent_challenge")
	var req struct {
		Subject        string   `json:"subject"`
		RequestedScope []string `json:"requested_scope"`
		RequestURL     string   `json:"request_url"`
	}
	if err := a.call(http.MethodGet, "/admin/oauth2/auth/requests/consent", "consent_challenge", challenge, nil, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	user, ok := a.users[req.Subject]
	if !ok {
		http.Error(w, "unknown subject", http.StatusForbidden)
		return
	}
	declined := strings.Fields(queryParam(req.RequestURL, "e2e_decline"))
	granted := []string{}
	for _, s := range req.RequestedScope {
		if !slices.Contains(declined, s) {
			granted = append(granted, s)
		}
	}
	claims := map[string]any{"permissions": nonNil(user.Permissions)}
	if user.OrgID != "" {
		claims["org_id"] = user.OrgID
	}
	if user.Role != "" {
		claims["role"] = user.Role
	}
	log.Printf("consent: %s granted scope %q (requested %q, declined %q)", req.Subject, granted, req.RequestedScope, declined)
	var redirect struct {
		RedirectTo string `json:"redirect_to"`
	}
	body := map[string]any{
		"grant_scope":                 granted,
		"grant_access_token_audience": []string{a.audience},
		"remember":                    false,
		"session":                     map[string]any{"access_token": claims},
	}
	if err := a.call(http.MethodPut, "/admin/oauth2/auth/requests/consent/accept", "consent_challenge", challenge, body, &redirect); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	http.Redirect(w, r, redirect.RedirectTo, http.StatusFound)
}

// tokenHook gives a client-credentials token the permissions recorded in the
// client's metadata ({"permissions": [...]}); other grants pass unchanged.
func (a *app) tokenHook(w http.ResponseWriter, r *http.Request) {
	var hook struct {
		Request struct {
			ClientID   string   `json:"client_id"`
			GrantTypes []string `json:"grant_types"`
		} `json:"request"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&hook); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !slices.Contains(hook.Request.GrantTypes, "client_credentials") {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var client struct {
		Metadata struct {
			Permissions []string `json:"permissions"`
		} `json:"metadata"`
	}
	if err := a.call(http.MethodGet, "/admin/clients/"+url.PathEscape(hook.Request.ClientID), "", "", nil, &client); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	log.Printf("consent: token hook: client %s gets permissions %q", hook.Request.ClientID, client.Metadata.Permissions)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"session": map[string]any{"access_token": map[string]any{"permissions": nonNil(client.Metadata.Permissions)}},
	})
}

// call sends one request to Hydra's admin API and decodes its JSON answer.
func (a *app) call(method, path, param, value string, body, out any) error {
	u := a.admin + path
	if param != "" {
		u += "?" + url.Values{param: {value}}.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("hydra admin %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}

func queryParam(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Query().Get(name)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
