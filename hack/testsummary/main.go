// Command testsummary reads `go test -json` on stdin, prints the output of failed
// tests and one line per package, and ends with a line CI can read:
//
//	tests: 123 passed, 0 failed, 2 skipped
//
// It exits non-zero when a test or a package (build error, TestMain) failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

func main() {
	outputs := map[string]*strings.Builder{} // package/test -> output
	var passed, failed, skipped int
	var failedTests, failedPackages []string
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1024*1024), 16*1024*1024)
	for scanner.Scan() {
		line := scanner.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			// Not JSON: a build error printed by go itself.
			fmt.Println(string(line))
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			b, ok := outputs[key]
			if !ok {
				b = &strings.Builder{}
				outputs[key] = b
			}
			b.WriteString(e.Output)
		case "pass", "fail", "skip":
			if e.Test == "" {
				status := strings.ToUpper(e.Action)
				if e.Action == "skip" {
					fmt.Printf("---- %s (no test files)\n", e.Package)
					continue
				}
				if e.Action == "fail" {
					failedPackages = append(failedPackages, e.Package)
					if b, ok := outputs[key]; ok {
						fmt.Print(indent(b.String()))
					}
				}
				fmt.Printf("%-4s %s (%.1fs)\n", status, e.Package, e.Elapsed)
				continue
			}
			switch e.Action {
			case "pass":
				passed++
			case "skip":
				skipped++
			case "fail":
				failed++
				failedTests = append(failedTests, key)
				if b, ok := outputs[key]; ok {
					fmt.Print(indent(b.String()))
				}
			}
			delete(outputs, key)
		}
	}
	sort.Strings(failedTests)
	for _, t := range failedTests {
		fmt.Println("failed:", t)
	}
	fmt.Printf("tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || len(failedPackages) > 0 {
		os.Exit(1)
	}
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
