// Runs client_tests.js in node (no browser): node tests/browser/run_node.mjs
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "starling-client-tests-"));
try {
  copyFileSync(join(here, "../../web-client/starling.js"), join(dir, "starling.js"));
  copyFileSync(join(here, "client_tests.js"), join(dir, "client_tests.js"));
  const { run } = await import(pathToFileURL(join(dir, "client_tests.js")).href);
  const report = await run((r) => console.log(`${r.ok ? "ok  " : "FAIL"} ${r.name} (${r.ms} ms)${r.ok ? "" : "\n" + r.error}`));
  console.log(`${report.passed}/${report.total} passed`);
  process.exitCode = report.failed ? 1 : 0;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
