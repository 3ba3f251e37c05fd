package aws

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"reflect"
	"strings"
	"testing"
)

// readParts reads merged user data back with the standard library's MIME
// reader, headers and all, as cloud-init would.
func readParts(t *testing.T, userData string) []userDataPart {
	t.Helper()
	header, body, ok := strings.Cut(userData, "\r\n\r\n")
	if !ok || !strings.HasPrefix(header, "MIME-Version: 1.0\r\n") {
		t.Fatalf("not MIME user data:\n%q", userData)
	}
	_, params, err := mime.ParseMediaType(strings.TrimPrefix(strings.Split(header, "\r\n")[1], "Content-Type: "))
	if err != nil {
		t.Fatalf("merged user data's Content-Type: %v", err)
	}
	r := multipart.NewReader(strings.NewReader(body), params["boundary"])
	var out []userDataPart
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("merged user data part %d: %v\n%q", len(out)+1, err, userData)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("merged user data part %d: %v", len(out)+1, err)
		}
		out = append(out, userDataPart{p.Header, data})
	}
}

// FuzzUserDataMerge: whatever a node class's spec.userData holds, merging
// never panics, is deterministic, and either refuses it as unreadable or
// writes user data that reads back as the user's parts, each with its
// headers and body unchanged, followed by nodewright's NodeConfig. Mutation
// tried: the fixed boundary whatever the parts hold (the code before this
// test) fails the seed whose CRLF script prints the boundary line, its part
// cut in two (cloud-init's parser splits on the LF-only line too).
func FuzzUserDataMerge(f *testing.F) {
	mimeDoc := func(parts ...string) string {
		return "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BOUNDARY\"\r\n\r\n--BOUNDARY\r\n" +
			strings.Join(parts, "\r\n--BOUNDARY\r\n") + "\r\n--BOUNDARY--\r\n"
	}
	for _, seed := range []string{
		"", "#!/bin/bash\necho hello\n", "#cloud-config\nruncmd: [[echo, hi]]\n",
		"apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  kubelet:\n    config:\n      maxPods: 42\n",
		mimeDoc("Content-Type: text/x-shellscript\r\n\r\n#!/bin/sh\necho one", "Content-Type: text/cloud-config\r\n\r\n#cloud-config\n"),
		mimeDoc("Content-Type: text/x-shellscript\r\nContent-Transfer-Encoding: base64\r\n\r\nIyEvYmluL3NoCmVjaG8gaGkK"),
		"#!/bin/bash\ncat <<EOF\n--//nodewright//\nEOF\n", "#!/bin/bash\r\ncat <<EOF\r\n--//nodewright//\r\nEOF\r\n",
		mimeDoc("Content-Type: text/x-shellscript\r\n\r\necho --//nodewright// --//nodewright-1//"),
		"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nnot multipart",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, userData string) {
		b := bootstrap{Labels: map[string]string{"team": "data"}, UserData: userData}
		merged, err := al2023UserData(testOptions, b)
		want, readErr := userParts(userData, contentTypeNodeConfig)
		if (err != nil) != (readErr != nil) {
			t.Fatalf("merge error %v, but reading the user's parts: %v", err, readErr)
		}
		if err != nil {
			return
		}
		if again, _ := al2023UserData(testOptions, b); again != merged {
			t.Fatal("the same inputs merged twice differ")
		}
		got := readParts(t, merged)
		if len(got) != len(want)+1 {
			t.Fatalf("%d parts read back, want the user's %d and the NodeConfig:\n%q", len(got), len(want), merged)
		}
		for i, w := range want {
			if !reflect.DeepEqual(got[i].header, w.header) || !bytes.Equal(got[i].body, w.body) {
				t.Fatalf("user part %d changed: %v %q, was %v %q", i+1, got[i].header, got[i].body, w.header, w.body)
			}
		}
		last := got[len(got)-1]
		if last.header.Get("Content-Type") != contentTypeNodeConfig || !bytes.Contains(last.body, []byte("name: "+testOptions.ClusterName)) {
			t.Fatalf("the last part is not nodewright's NodeConfig: %v %q", last.header, last.body)
		}
	})
}
