package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// The documentation is cited by the code and linked from the README; these
// tests fail when a citation or a link names a file or heading that does not
// exist, so that a renamed heading cannot silently strand its citations.

// repoRoot is the repository, seen from this package's directory (go test
// runs in it).
const repoRoot = "../.."

// oldContract is the file docs/ replaces, spelt so that this file does not
// cite it.
const oldContract = "CONTRACT" + ".md"

// docHeadings reads a Markdown file's headings, outside fenced code blocks:
// their text (as cited: `docs/http.md, "Sessions"`) and their anchors (as
// linked: `http.md#sessions`).
func docHeadings(t *testing.T, path string) (texts, anchors map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	texts, anchors = map[string]bool{}, map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		level := len(line) - len(strings.TrimLeft(line, "#"))
		if fenced || level == 0 || level > 6 || !strings.HasPrefix(line[level:], " ") {
			continue
		}
		text := strings.TrimSpace(line[level:])
		texts[text] = true
		a := anchor(text)
		if n := seen[a]; n > 0 {
			seen[a]++
			a = a + "-" + strconv.Itoa(n)
		} else {
			seen[a] = 1
		}
		anchors[a] = true
	}
	return texts, anchors
}

// anchor is the fragment GitHub gives a heading: lower case, punctuation
// other than - and _ dropped, spaces as hyphens.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// lineAt is the 1-based line of offset in s.
func lineAt(s string, offset int) int { return strings.Count(s[:offset], "\n") + 1 }

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocLinksResolve: every relative link in README.md and docs/*.md names
// a file that exists and, into a Markdown file, a heading it has; and the
// README links every document of docs/.
func TestDocLinksResolve(t *testing.T) {
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs/*.md (%v)", err)
	}
	readme := filepath.Join(repoRoot, "README.md")
	linked := map[string]bool{}
	for _, file := range append([]string{readme}, docs...) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatchIndex(string(b), -1) {
			link := string(b[m[2]:m[3]])
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			path, frag, _ := strings.Cut(link, "#")
			target := file
			if path != "" {
				target = filepath.Join(filepath.Dir(file), path)
			}
			at := filepath.Base(file) + ":" + strconv.Itoa(lineAt(string(b), m[0]))
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s: link %q: %v", at, link, err)
				continue
			}
			if file == readme {
				linked[filepath.Clean(target)] = true
			}
			if frag != "" && strings.HasSuffix(target, ".md") {
				if _, anchors := docHeadings(t, target); !anchors[frag] {
					t.Errorf("%s: link %q: %s has no heading with anchor #%s", at, link, filepath.Base(target), frag)
				}
			}
		}
	}
	for _, d := range docs {
		if !linked[filepath.Clean(d)] {
			t.Errorf("README.md does not link docs/%s", filepath.Base(d))
		}
	}
}

// A citation names a document and one of its headings, possibly across a
// comment's line break: (docs/http.md, "Sessions"). In JSON the quotes are
// escaped.
var (
	citation   = regexp.MustCompile(`docs/([\w-]+\.md),(?:\s|//|#)*\\?"([^"\\]+)\\?"`)
	docMention = regexp.MustCompile(`docs/([\w-]+\.md)`)
	lineBreak  = regexp.MustCompile(`\s*\n\s*(?://|#)?\s*`)
)

// TestCitationsResolve: every citation of docs/ in the repository's code,
// schemas and Markdown names a document that exists and a heading it has;
// and nothing cites the old contract file, which docs/ replaces.
func TestCitationsResolve(t *testing.T) {
	headings := map[string]map[string]bool{}
	cited := 0
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != repoRoot && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(name) {
		case ".go", ".md", ".json", ".rego":
		default:
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		s := string(b)
		rel, _ := filepath.Rel(repoRoot, path)
		if i := strings.Index(s, oldContract); i >= 0 {
			t.Errorf("%s:%d: cites %s; cite the document of docs/ that holds the fact", rel, lineAt(s, i), oldContract)
		}
		for _, m := range docMention.FindAllStringSubmatchIndex(s, -1) {
			doc := s[m[2]:m[3]]
			if _, ok := headings[doc]; !ok {
				if _, err := os.Stat(filepath.Join(repoRoot, "docs", doc)); err != nil {
					t.Errorf("%s:%d: docs/%s does not exist", rel, lineAt(s, m[0]), doc)
					headings[doc] = nil
					continue
				}
				headings[doc], _ = docHeadings(t, filepath.Join(repoRoot, "docs", doc))
			}
		}
		for _, m := range citation.FindAllStringSubmatchIndex(s, -1) {
			doc, heading := s[m[2]:m[3]], lineBreak.ReplaceAllString(s[m[4]:m[5]], " ")
			cited++
			if h := headings[doc]; h != nil && !h[heading] {
				t.Errorf("%s:%d: docs/%s has no heading %q", rel, lineAt(s, m[0]), doc, heading)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if cited == 0 {
		t.Error("no citation of docs/ found: the pattern no longer matches how the code cites")
	}
}
