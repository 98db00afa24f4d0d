package policy

import (
	"context"
	"errors"
	"io"

	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestOptions are `opa test`'s -v and --coverage.
type TestOptions struct {
	Verbose  bool
	Coverage bool // report coverage as JSON instead of the test results
}

// RunTests runs the Rego unit tests under dir the way `opa test dir` does,
// with OPA's own test runner and reporters, and says whether all passed.
func RunTests(ctx context.Context, dir string, out io.Writer, o TestOptions) error {
	modules, store, err := tester.Load([]string{dir}, nil)
	if err != nil {
		return err
	}
	runner := tester.NewRunner().SetStore(store).EnableTracing(o.Verbose)
	var reporter tester.Reporter = tester.PrettyReporter{Output: out, Verbose: o.Verbose, FailureLine: true}
	if o.Coverage {
		cov := cover.New()
		runner = runner.SetCoverageQueryTracer(cov).SetCoverageRuns([]cover.Kind{cover.KindIndexExcluded, cover.KindEarlyExit})
		reporter = tester.JSONCoverageReporter{Cover: cov, Modules: modules, Output: out, Verbose: o.Verbose}
	}
	ch, err := runner.SetModules(modules).RunTests(ctx, nil)
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
	if err := reporter.Report(counted); err != nil {
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
