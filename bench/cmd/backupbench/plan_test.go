package main

import "testing"

func TestParsePlanText(t *testing.T) {
	text := `component   count  each     total
upload buffers  1  40 MiB   40 MiB   S3 multipart parts
bound: committed memory                                          132 MiB  private writable mappings
bound: resident memory (RSS)                                     63.5 MiB
`
	b, err := parsePlanText(text)
	if err != nil {
		t.Fatal(err)
	}
	if b.Committed != 132<<20 || b.RSS != 63<<20+512<<10 {
		t.Fatalf("got %+v", b)
	}
	if _, err := parsePlanText("bound: committed memory 12 parsecs\n"); err == nil {
		t.Fatal("bad unit accepted")
	}
	if _, err := parsePlanText("nothing here\n"); err == nil {
		t.Fatal("plan without bounds accepted")
	}
}
