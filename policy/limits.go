package policy

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
)

// Limit is one element of the contract's limits rule
// (docs/policy-contract.md, "limits"): the calls whose limits share a Key
// share a budget of Rate calls Per duration, which must have room for the
// call to run. Counting is the gate's (package limits), never cached.
type Limit struct {
	Key  string        // what is counted; logged, never a metric label
	Rate int           // calls per Per, all of which may come at once
	Per  time.Duration // the period the budget refills over
	Name string        // what the client is told when the limit refuses a call; optional
}

// Which is how a refused call names the limit: its name, else its rate.
func (l Limit) Which() string {
	if l.Name != "" {
		return l.Name
	}
	return fmt.Sprintf("%d per %s", l.Rate, l.Per)
}

// readLimits reads the wrapper's limits document: a set of objects (sets
// arrive as arrays), each checked here, where the message can name the
// object. Any mistake is an error, so the call is denied: a limit the gate
// cannot read must not be a call it lets through uncounted.
func readLimits(v any) ([]Limit, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, wrongType(v, "limits must be a set of objects")
	}
	out := make([]Limit, 0, len(list))
	for _, x := range list {
		m, ok := x.(map[string]any)
		if !ok {
			return nil, errors.New("limits must be a set of objects")
		}
		l, err := readLimit(m)
		if err != nil {
			text, _ := json.Marshal(m) // sorted keys
			return nil, fmt.Errorf("limit %s: %w", text, err)
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Limit) int {
		return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Rate, b.Rate), cmp.Compare(a.Per, b.Per), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

func readLimit(m map[string]any) (Limit, error) {
	var l Limit
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch k {
		case "key", "rate", "per", "name":
		default:
			return l, fmt.Errorf("unknown field %q", k)
		}
	}
	var ok bool
	if l.Key, ok = m["key"].(string); !ok || l.Key == "" {
		return l, errors.New("key must be a non-empty string")
	}
	if n, ok := m["rate"].(json.Number); ok {
		rate, err := strconv.ParseInt(string(n), 10, 32)
		if err == nil && rate > 0 {
			l.Rate = int(rate)
		}
	}
	if l.Rate == 0 {
		return l, errors.New("rate must be a positive integer")
	}
	if s, ok := m["per"].(string); ok {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			l.Per = d
		}
	}
	if l.Per == 0 {
		return l, errors.New(`per must be a positive duration such as "1m" or "24h"`)
	}
	if name, ok := m["name"]; ok {
		if l.Name, ok = name.(string); !ok {
			return l, errors.New("name must be a string")
		}
	}
	return l, nil
}
