//go:build !agentonly

package main_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gpufleet/gpufleet/internal/testenv"
)

// The fleet page as a user sees it: a demo runs, headless Chromium (Debian's chromium, installed
// by deploy/dev/test-packages.sh) opens the URL the demo prints, and the page shows the fleet's
// GPUs by state, a drain list with a failed GPU's action, recent XIDs with the catalog's words and
// both charts drawn. The screenshot is saved in the test's artifact directory (go test -artifacts
// keeps it, as a PNG). The cluster label is markup, which the page must show as text.
func TestFleetPageInBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: deploy/dev/test-packages.sh install (make test runs it)")
	}
	lib := testenv.LibCHDB(t)
	const label = `<b id="x">c&1</b>`
	// No random failures: the one fault is the injected Xid 79 on node-00005's GPU 3.
	cmd := exec.Command(binary, "demo", "--gpus", "64", "--interval", "200ms", "--cluster", label,
		"--failure-scale", "0", "--inject", "node=node-00005,gpu=3,fault=xid79,after=3s",
		"--data-dir", filepath.Join(t.TempDir(), "data"), "--http", "127.0.0.1:0")
	cmd.Env = append(cleanEnv(), "GPUFLEET_LIBCHDB="+lib)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	var page string
	waitUntil(t, time.Minute, "the demo's page URL", func() bool {
		m := regexp.MustCompile(`fleet health page at (http://\S+)`).FindStringSubmatch(stderr.String())
		if m != nil {
			page = m[1]
		}
		return page != ""
	}, stderr.String)

	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.Flag("no-sandbox", os.Geteuid() == 0), chromedp.Flag("window-size", "1280,1400"))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	// The failed GPU's row: the agent's health rules turn the Xid into reboot_node, and ingest
	// stores the event the page's drain list reads.
	if err := chromedp.Do(ctx, chromedp.Navigate(page+"?refresh=1000"),
		chromedp.WaitVisible(`#drain tbody td.action`), chromedp.WaitVisible(`#chart-power path.line`)); err != nil {
		t.Fatalf("page %s: %v\ndemo stderr:\n%s", page, err, tailOf(stderr.String()))
	}
	js := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	cell := func(sel string) string { return js(`document.querySelector(` + strconv.Quote(sel) + `).textContent`) }
	// The page counts the GPUs that have reported; a few may not have yet at the first row.
	var gpus string
	waitUntil(t, time.Minute, "the page to count all 64 GPUs", func() bool {
		gpus = cell(`#states .card .n`)
		return gpus == "64"
	}, func() string { return "the page counts " + gpus + " GPUs" })
	// The state cards and the drain list are separate reads of one refresh; within a refresh or
	// two they agree: one GPU needs a reboot, the rest are healthy.
	var rebootCard, healthyCard string
	waitUntil(t, 30*time.Second, "the reboot_node card to count the failed GPU", func() bool {
		rebootCard = cell(`#states .card[data-state="reboot_node"] .n`)
		healthyCard = cell(`#states .card[data-state="healthy"] .n`)
		return rebootCard == "1" && healthyCard == "63"
	}, func() string { return "reboot_node " + rebootCard + ", healthy " + healthyCard })
	row := js(`Array.from(document.querySelector("#drain tbody tr").cells, c => c.textContent).join("|")`)
	xids := js(`Array.from(document.querySelectorAll("#xids tbody tr"), r => Array.from(r.cells, c => c.textContent).join("|")).join("\n")`)
	utilPoints := js(`document.getElementById("chart-util").dataset.points || ""`)
	powerPoints := js(`document.getElementById("chart-power").dataset.points || ""`)
	injected := js(`String(document.getElementById("x") !== null)`) == "true"
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.ArtifactDir(), "fleet-page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("GPUs %s; drain row %q; XIDs %q; chart points util %s power %s; screenshot %s (%d bytes)",
		gpus, row, xids, utilPoints, powerPoints, path, len(shot))
	// action | cluster | node | GPU | uuid | reason | since | job
	cells := strings.Split(row, "|")
	if len(cells) != 8 || cells[0] != "reboot_node" || cells[1] != label || cells[2] != "node-00005" || cells[3] != "3" ||
		!strings.Contains(cells[5], "79") {
		t.Errorf("drain row %q, want reboot_node on %s node-00005 GPU 3 for Xid 79, the label as text", row, label)
	}
	if injected {
		t.Error("the markup cluster label became an element")
	}
	if !strings.Contains(xids, "node-00005|3|79|ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS") || !strings.Contains(xids, "RESTART_BM|pcie_bus") {
		t.Errorf("recent XIDs %q lack Xid 79 on node-00005 GPU 3 with the catalog's words", xids)
	}
	if utilPoints == "" || powerPoints == "" {
		t.Errorf("charts not drawn: util %q, power %q points", utilPoints, powerPoints)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool, diag func() string) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out after %s waiting for %s\n%s", d, what, tailOf(diag()))
}

func tailOf(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}
