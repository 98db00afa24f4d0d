package idp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/MicahParks/jwkset"
	"github.com/toolgate/toolgate/config"
)

// MaxJWKSBytes bounds a JWKS or discovery response. Real key sets are a few
// KiB; anything near this is a fault or an attack.
const MaxJWKSBytes = 1 << 20

// jwksGuard is the transport of the JWKS fetches. keyfunc replaces its cache
// with whatever a 200 response holds, reads bodies without a bound, and says
// nothing of a success; the guard turns an oversized, malformed or empty key
// set into a failed refresh (so good keys stay cached) and reports every
// outcome.
type jwksGuard struct {
	base   http.RoundTripper
	report func(err error, kids []string)
}

func (g *jwksGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := g.base.RoundTrip(req)
	if err != nil {
		g.report(err, nil)
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		err := fmt.Errorf("JWKS answered HTTP %d", resp.StatusCode)
		g.report(err, nil)
		return nil, err
	}
	body, err := readBounded(resp.Body)
	resp.Body.Close()
	if err == nil {
		var kids []string
		if kids, err = usableKeys(body); err == nil {
			g.report(nil, kids)
			resp.Body = io.NopCloser(bytes.NewReader(body))
			resp.ContentLength = int64(len(body))
			return resp, nil
		}
	}
	g.report(err, nil)
	return nil, err
}

// usableKeys lists the kids of the verification keys in a JWK Set. It
// judges the set exactly as jwkset's refresh will (a key of an unsupported
// type is skipped, any other bad key refuses the whole set), so that what it
// reports is what the key store then holds; and it refuses a set with no
// usable key, which jwkset would accept and so empty the store.
func usableKeys(body []byte) ([]string, error) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("JWKS is not a JWK Set: %w", err)
	}
	kids := []string{}
	for _, k := range set.Keys {
		_, err := jwkset.NewJWKFromMarshal(k, jwkset.JWKMarshalOptions{Private: true}, jwkset.JWKValidateOptions{})
		switch {
		case errors.Is(err, jwkset.ErrUnsupportedKey):
		case err != nil:
			return nil, fmt.Errorf("JWKS key %q: %w", k.KID, err)
		case k.KTY == jwkset.KtyRSA || k.KTY == jwkset.KtyEC || k.KTY == jwkset.KtyOKP:
			// Only asymmetric keys verify the algorithms toolgate accepts.
			kids = append(kids, k.KID)
		}
	}
	if len(kids) == 0 {
		return nil, errors.New("JWKS holds no usable key")
	}
	return kids, nil
}

func readBounded(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxJWKSBytes {
		return nil, fmt.Errorf("response is over %d bytes", MaxJWKSBytes)
	}
	return b, nil
}

// presetJWKSPaths are where each provider publishes its keys, relative to
// the issuer's origin.
var presetJWKSPaths = map[string]string{
	"auth0":  "/.well-known/jwks.json",
	"workos": "/oauth2/jwks",
	"stytch": "/.well-known/jwks.json",
}

// jwksURL resolves an issuer's JWKS URL: the configured one, else the
// provider preset, else discovery (OpenID Connect Discovery 1.0 §4, then
// RFC 8414 §3).
func jwksURL(ctx context.Context, client *http.Client, is Issuer) (string, error) {
	if is.JWKSURL != "" {
		return is.JWKSURL, nil
	}
	if p, ok := presetJWKSPaths[is.Provider]; ok {
		u, err := url.Parse(is.Issuer)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("issuer %q is not a URL; set jwks_url", is.Issuer)
		}
		return u.Scheme + "://" + u.Host + p, nil
	}
	var errs []error
	for _, d := range discoveryURLs(is.Issuer) {
		u, err := discover(ctx, client, d, is.Issuer)
		if err == nil {
			return u, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

// discoveryURLs lists the metadata documents of an issuer: the OIDC form
// appends the well-known suffix to the issuer; RFC 8414 §3.1 inserts it
// between host and path.
func discoveryURLs(issuer string) []string {
	urls := []string{strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"}
	if u, err := url.Parse(issuer); err == nil && u.Host != "" {
		urls = append(urls, u.Scheme+"://"+u.Host+"/.well-known/oauth-authorization-server"+strings.TrimSuffix(u.Path, "/"))
	}
	return urls
}

// refuseInsecureRedirect keeps a redirect of a discovery fetch to the same
// rule as the URL itself: https, or http on loopback.
func refuseInsecureRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	return config.CheckURL(req.URL.String())
}

func discover(ctx context.Context, client *http.Client, docURL, issuer string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, docURL, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s answered HTTP %d", docURL, resp.StatusCode)
	}
	body, err := readBounded(resp.Body)
	if err != nil {
		return "", fmt.Errorf("%s: %w", docURL, err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("%s: %w", docURL, err)
	}
	// OIDC Discovery §4.3 and RFC 8414 §3.3: the document must name the
	// issuer it was fetched for, or it may be an impostor's.
	if doc.Issuer != issuer {
		return "", fmt.Errorf("%s names issuer %q, want %q", docURL, doc.Issuer, issuer)
	}
	if err := config.CheckURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("%s: jwks_uri: %w", docURL, err)
	}
	return doc.JWKSURI, nil
}
