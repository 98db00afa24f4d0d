// Package outcome is toolgate's one table of answers: every reason code —
// a refused token, a refusal of the gate's own, a policy decision — with
// the HTTP status, the OAuth error, the JSON-RPC answer, the metric that
// counts it and the level it is logged at. The gate answers from it, the
// decision log and the metrics label with its codes, `toolgate policy
// explain` describes answers from it, and docs/http.md's table is rendered
// from it (a test keeps the two equal).
package outcome

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
)

// Code is a stable snake_case reason code. The same code is the JSON body's
// error_description (or reason_code), a log field and a metric label.
type Code string

// Kind says who produces a code.
type Kind string

const (
	// Token: the bearer token was refused (or could not be checked); the
	// metric is toolgate_token_validations_total{reason}.
	Token Kind = "token"
	// Gate: the gate refused the request before MCP saw it;
	// toolgate_requests_refused_total{reason}.
	Gate Kind = "gate"
	// Decision: the policy's decision on a call or a list;
	// toolgate_policy_decisions_total{reason}.
	Decision Kind = "decision"
)

// Outcome is what toolgate does for one code.
type Outcome struct {
	Code Code
	Kind Kind
	// Status is the HTTP status of the answer. 200 means MCP answers:
	// a result, a JSON-RPC error or a tool result with isError.
	Status int
	// OAuthError is the "error" of the JSON body (and of the Bearer
	// challenge where Challenge says so); empty for an MCP answer.
	OAuthError string
	// Challenge is the error code a WWW-Authenticate challenge carries:
	// "" for none (RFC 6750 §3.1: a request without Bearer credentials
	// gets none), or invalid_token, insufficient_scope.
	Challenge string
	// JSONRPCCode is the JSON-RPC error code of an MCP error answer; 0
	// when the answer is not a JSON-RPC error.
	JSONRPCCode int
	// ToolError is true when the answer is a tool result with isError.
	ToolError bool
	// RetryAfter is the Retry-After of the answer, in seconds; 0: none.
	RetryAfter int
	// Level is the level of the gate's log line; below Info, none is
	// written at the default level (the decision log has decisions).
	Level slog.Level
	// Answer says what the client gets, in words.
	Answer string
}

// Token reasons: why a bearer token was refused (idp.Reason values are
// these strings).
const (
	TokenMissing        Code = "token_missing"
	NotBearer           Code = "not_bearer"
	TokenInQuery        Code = "token_in_query"
	TokenTooLarge       Code = "token_too_large"
	TokenMalformed      Code = "token_malformed"
	AlgNotAllowed       Code = "alg_not_allowed"
	IssuerUnknown       Code = "issuer_unknown"
	KeyUnknown          Code = "key_unknown"
	SignatureInvalid    Code = "signature_invalid"
	TokenExpired        Code = "token_expired"
	ExpMissing          Code = "exp_missing"
	TokenNotYetValid    Code = "token_not_yet_valid"
	TokenIssuedInFuture Code = "token_issued_in_future"
	AudienceMissing     Code = "audience_missing"
	AudienceMismatch    Code = "audience_mismatch"
	SubjectMissing      Code = "subject_missing"
	ClaimsInvalid       Code = "claims_invalid"
	// JWKSUnavailable is toolgate's fault, not the token's: the issuer's
	// keys were never fetched.
	JWKSUnavailable Code = "jwks_unavailable"
)

// Gate refusals: requests the gate answers itself, before MCP.
const (
	OriginNotAllowed Code = "origin_not_allowed"
	RequestTooLarge  Code = "request_too_large"
	BadRequest       Code = "bad_request"
	InvalidMessage   Code = "invalid_message"
	RequestTooDeep   Code = "request_too_deep"
	TooManySessions  Code = "too_many_sessions"
	SessionNotFound  Code = "session_not_found"
	InternalError    Code = "internal_error"
)

// Decision reasons: the bounded code behind a policy's free-form reason
// text (which goes to the decision log only).
const (
	Allowed           Code = "allowed"
	NotVisible        Code = "not_visible"
	InsufficientScope Code = "insufficient_scope"
	PolicyDenied      Code = "policy_denied"
	ArgumentsInvalid  Code = "arguments_invalid"
	EvaluationError   Code = "evaluation_error"
	// ToolChanged is the gate's, not the policy's: a call of a tool that a
	// pinned upstream withholds, its definition not the lock file's.
	ToolChanged Code = "tool_changed"
	// RateLimited: allowed by the policy, but one of its limits had no
	// room (docs/policy-contract.md, "limits").
	RateLimited Code = "rate_limited"
	// LimitsUnavailable: allowed by the policy, with limits that could not
	// be counted (the store is unreachable, limits.on_store_error: deny).
	LimitsUnavailable Code = "limits_unavailable"
)

const invalidTokenAnswer = "401, `WWW-Authenticate: Bearer error=\"invalid_token\", error_description=\"<code>\", resource_metadata=\"…\"`"

// JSON-RPC error codes of MCP answers (JSON-RPC 2.0 §5.1).
const jsonrpcInvalidParams = -32602

func token(c Code, answer string) Outcome {
	return Outcome{Code: c, Kind: Token, Status: http.StatusUnauthorized, OAuthError: "invalid_token",
		Challenge: "invalid_token", Level: slog.LevelDebug, Answer: answer}
}

// Table is every outcome, in the order docs/http.md lists them.
var Table = []Outcome{
	{Code: TokenMissing, Kind: Token, Status: http.StatusUnauthorized, OAuthError: "invalid_token", Level: slog.LevelDebug,
		Answer: "401, `WWW-Authenticate: Bearer resource_metadata=\"…\"` (no error code: RFC 6750 §3.1)"},
	{Code: NotBearer, Kind: Token, Status: http.StatusUnauthorized, OAuthError: "invalid_token", Level: slog.LevelDebug,
		Answer: "401 like `token_missing`: another scheme is no Bearer credential"},
	token(TokenInQuery, invalidTokenAnswer+"; a token in the query string is refused even beside a good header"),
	token(TokenTooLarge, invalidTokenAnswer+" (over 16 KiB)"),
	token(TokenMalformed, invalidTokenAnswer),
	token(AlgNotAllowed, invalidTokenAnswer+" (only RS/PS/ES 256/384/512)"),
	token(IssuerUnknown, invalidTokenAnswer),
	token(KeyUnknown, invalidTokenAnswer),
	token(SignatureInvalid, invalidTokenAnswer),
	token(TokenExpired, invalidTokenAnswer),
	token(ExpMissing, invalidTokenAnswer),
	token(TokenNotYetValid, invalidTokenAnswer),
	token(TokenIssuedInFuture, invalidTokenAnswer),
	token(AudienceMissing, invalidTokenAnswer),
	token(AudienceMismatch, invalidTokenAnswer),
	token(SubjectMissing, invalidTokenAnswer),
	token(ClaimsInvalid, invalidTokenAnswer),
	{Code: JWKSUnavailable, Kind: Token, Status: http.StatusServiceUnavailable, OAuthError: "temporarily_unavailable", RetryAfter: 5, Level: slog.LevelWarn,
		Answer: "503, `Retry-After: 5`: the issuer's keys were never fetched (toolgate's fault, not the token's)"},
	{Code: OriginNotAllowed, Kind: Gate, Status: http.StatusForbidden, OAuthError: "forbidden", Level: slog.LevelWarn,
		Answer: "403, before authentication: an `Origin` or `Host` that is not allowed"},
	{Code: RequestTooLarge, Kind: Gate, Status: http.StatusRequestEntityTooLarge, OAuthError: "request_too_large", Level: slog.LevelWarn,
		Answer: "413, `Connection: close`: a body over `limits.max_body_bytes`"},
	{Code: BadRequest, Kind: Gate, Status: http.StatusBadRequest, OAuthError: "invalid_request", Level: slog.LevelInfo,
		Answer: "400: a body that could not be read"},
	{Code: InvalidMessage, Kind: Gate, Status: http.StatusBadRequest, OAuthError: "invalid_request", Level: slog.LevelInfo,
		Answer: "400: a body whose method and params the gate cannot read (params not an object, a name not a string, a batch)"},
	{Code: RequestTooDeep, Kind: Gate, Status: http.StatusBadRequest, OAuthError: "invalid_request", Level: slog.LevelWarn,
		Answer: "400: JSON nested deeper than `limits.max_json_depth`, refused before any decoding"},
	{Code: TooManySessions, Kind: Gate, Status: http.StatusTooManyRequests, OAuthError: "too_many_sessions", RetryAfter: 60, Level: slog.LevelWarn,
		Answer: "429, `Retry-After: 60`, naming the limit: the owner holds its limit of sessions and streams"},
	{Code: SessionNotFound, Kind: Gate, Status: http.StatusNotFound, OAuthError: "session_not_found", Level: slog.LevelInfo,
		Answer: "404: an `Mcp-Session-Id` that is unknown or another owner's (never confirmed to exist)"},
	{Code: InternalError, Kind: Gate, Status: http.StatusInternalServerError, OAuthError: "server_error", Level: slog.LevelError,
		Answer: "500: a fault of toolgate's own"},
	{Code: Allowed, Kind: Decision, Status: http.StatusOK, Level: slog.LevelDebug,
		Answer: "the call runs; the tool's result"},
	{Code: NotVisible, Kind: Decision, Status: http.StatusOK, JSONRPCCode: jsonrpcInvalidParams, Level: slog.LevelDebug,
		Answer: "JSON-RPC error -32602 `tool '<name>' not found`, the same as a tool that does not exist"},
	{Code: InsufficientScope, Kind: Decision, Status: http.StatusForbidden, OAuthError: "insufficient_scope", Challenge: "insufficient_scope", Level: slog.LevelDebug,
		Answer: "403, `WWW-Authenticate: Bearer error=\"insufficient_scope\", scope=\"<scopes>\", resource_metadata=\"…\"` (step-up)"},
	{Code: PolicyDenied, Kind: Decision, Status: http.StatusOK, ToolError: true, Level: slog.LevelDebug,
		Answer: "a tool result with `isError: true`, text `Permission denied: <reason>`, `_meta.decision_id`"},
	{Code: ArgumentsInvalid, Kind: Decision, Status: http.StatusOK, JSONRPCCode: jsonrpcInvalidParams, Level: slog.LevelInfo,
		Answer: "JSON-RPC error -32602 `tool '<name>' not found` (fail closed: a decision that could not be made shows no tool): arguments that are not a JSON object, the client's fault, logged at INFO"},
	{Code: EvaluationError, Kind: Decision, Status: http.StatusOK, JSONRPCCode: jsonrpcInvalidParams, Level: slog.LevelError,
		Answer: "JSON-RPC error -32602 `tool '<name>' not found` (fail closed: a decision that could not be made shows no tool), logged at ERROR; a list shows no tool"},
	{Code: ToolChanged, Kind: Decision, Status: http.StatusOK, JSONRPCCode: jsonrpcInvalidParams, Level: slog.LevelDebug,
		Answer: "JSON-RPC error -32602 `tool '<name>' not found`, as for a tool that does not exist: a tool of a `pin: true` upstream whose definition is not the lock file's is neither listed nor called (the policy is not asked; the change is logged once, at WARN)"},
	{Code: RateLimited, Kind: Decision, Status: http.StatusOK, ToolError: true, Level: slog.LevelInfo,
		Answer: "a tool result with `isError: true`, text `Rate limit exceeded: <which>; retry after <n>s`, `_meta.decision_id` and `_meta.retry_after_seconds`; the call is not run; also counted in `toolgate_rate_limited_total{tool}`, logged with the limit's key"},
	{Code: LimitsUnavailable, Kind: Decision, Status: http.StatusOK, ToolError: true, Level: slog.LevelError,
		Answer: "a tool result with `isError: true`, text `Rate limits cannot be checked: the limit store is unreachable; the call was not run`, `_meta.decision_id` (fail closed, `limits.on_store_error: deny`); calls without limits run"},
}

var byCode = func() map[Code]Outcome {
	m := make(map[Code]Outcome, len(Table))
	for _, o := range Table {
		if _, dup := m[o.Code]; dup {
			panic("outcome: code listed twice: " + string(o.Code))
		}
		m[o.Code] = o
	}
	return m
}()

// Of returns the outcome of a code; an unknown code is an internal error
// (fail closed: it can only come from a bug).
func Of(c Code) Outcome {
	if o, ok := byCode[c]; ok {
		return o
	}
	return byCode[InternalError]
}

// Codes returns the codes of one kind, in table order.
func Codes(k Kind) []Code {
	var out []Code
	for _, o := range Table {
		if o.Kind == k {
			out = append(out, o.Code)
		}
	}
	return out
}

// Markdown renders the table as docs/http.md shows it.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| code | kind | HTTP | counted in | log level | answer |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, o := range Table {
		fmt.Fprintf(&b, "| `%s` | %s | %d | `%s` | %s | %s |\n", o.Code, o.Kind, o.Status, o.Metric(), o.Level, o.Answer)
	}
	return b.String()
}

// Metric is the family that counts the outcome, by its reason label.
func (o Outcome) Metric() string {
	switch o.Kind {
	case Token:
		return "toolgate_token_validations_total"
	case Gate:
		return "toolgate_requests_refused_total"
	}
	return "toolgate_policy_decisions_total"
}
