// node decrypt.mjs IDENTITY_FILE IN OUT: decrypt an age file with age-encryption (a second implementation).
import { readFileSync, writeFileSync } from "node:fs";
import { age, identities, run } from "./common.mjs";

run("decrypt.mjs IDENTITY_FILE IN OUT", 3, async ([identityFile, input, output]) => {
  const d = new age.Decrypter();
  for (const identity of identities(identityFile)) {
    d.addIdentity(identity);
  }
  const plain = await d.decrypt(new Uint8Array(readFileSync(input)));
  writeFileSync(output, plain);
});
