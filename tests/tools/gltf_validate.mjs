// Validate one GLB read from stdin with the Khronos glTF-Validator; print the report as JSON.
// Usage: node tests/tools/gltf_validate.mjs < asset.glb   (needs .cache/node/node_modules/gltf-validator)
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "..", ".cache", "node", "package.json"));
const validator = require("gltf-validator");

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const bytes = new Uint8Array(Buffer.concat(chunks));
try {
  const report = await validator.validateBytes(bytes, { maxIssues: 200, writeTimestamp: false });
  process.stdout.write(JSON.stringify(report));
} catch (err) {
  process.stderr.write(String(err && err.stack ? err.stack : err));
  process.exit(2);
}
