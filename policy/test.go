package policy

import (
	"context"
	"errors"
	"io"

	"github.com/open-policy-agent/opa/v1/tester"
)

// RunTests runs the Rego unit tests under dir the way `opa test dir` does,
// with OPA's own test runner and reporter, and says whether all passed.
func RunTests(ctx context.Context, dir string, out io.Writer, verbose bool) error {
	modules, store, err := tester.Load([]string{dir}, nil)
	if err != nil {
		return err
	}
	ch, err := tester.NewRunner().SetStore(store).EnableTracing(verbose).Run(ctx, modules)
	if err != nil {
		return err
	}
	var results []*tester.Result
	counted := make(chan *tester.Result)
	go func() {
		defer close(counted)
		for r := range ch {
			results = append(results, r)
			counted <- r
		}
	}()
	if err := (tester.PrettyReporter{Output: out, Verbose: verbose, FailureLine: true}).Report(counted); err != nil {
		return err
	}
	if len(results) == 0 {
		return errors.New("no test cases found")
	}
	for _, r := range results {
		if !r.Pass() {
			return errors.New("some tests failed")
		}
	}
	return nil
}
