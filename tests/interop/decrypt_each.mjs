// node decrypt_each.mjs IDENTITY_FILE OUT_DIR IN...: try to decrypt each age file with age-encryption (a second
// implementation), each with a fresh Decrypter, in one process (a node start-up per file cost more than the
// decryption); writes OUT_DIR/<n> for the n-th input it opened and prints one JSON line per input.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { age, identities, run } from "./common.mjs";

run("decrypt_each.mjs IDENTITY_FILE OUT_DIR IN...", 2, async ([identityFile, outDir, ...inputs]) => {
  const keys = identities(identityFile);
  mkdirSync(outDir, { recursive: true });
  for (const [n, input] of inputs.entries()) {
    const d = new age.Decrypter();
    for (const identity of keys) {
      d.addIdentity(identity);
    }
    try {
      writeFileSync(join(outDir, String(n)), await d.decrypt(new Uint8Array(readFileSync(input))));
      process.stdout.write(JSON.stringify({ input, opened: true }) + "\n");
    } catch (err) {
      process.stdout.write(JSON.stringify({ input, opened: false, error: String(err && err.message ? err.message : err) }) + "\n");
    }
  }
});
