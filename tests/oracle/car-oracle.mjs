// Independent CAR oracle for tests/cas/test_carv2.py, built on npm @ipld/car (reads CARv1 and CARv2).
//
// usage: node car-oracle.mjs read FILE    -> {"version", "roots", "blocks": [{"cid", "offset"}]}
//        node car-oracle.mjs write FILE   (stdin: {"roots": [cid], "blocks": {cid: base64}}) -> CARv1
// "offset" is where the block's section (its length varint) starts in FILE, per @ipld/car's indexer.
import { CarReader, CarIndexer, CarWriter } from '@ipld/car'
import { CID } from 'multiformats/cid'
import * as fs from 'node:fs'

const [cmd, file] = process.argv.slice(2)
if (cmd === 'read') {
  const bytes = fs.readFileSync(file)
  const reader = await CarReader.fromBytes(bytes) // verifies the structure, not the hashes
  const indexer = await CarIndexer.fromBytes(bytes)
  const blocks = []
  for await (const entry of indexer) blocks.push({ cid: entry.cid.toString(), offset: entry.offset })
  const roots = (await reader.getRoots()).map(String)
  process.stdout.write(JSON.stringify({ version: reader.version, roots, blocks }) + '\n')
} else if (cmd === 'write') {
  const input = JSON.parse(fs.readFileSync(0, 'utf8'))
  const { writer, out } = CarWriter.create(input.roots.map(r => CID.parse(r)))
  const chunks = []
  const done = (async () => { for await (const c of out) chunks.push(c) })()
  for (const [cid, b64] of Object.entries(input.blocks)) {
    await writer.put({ cid: CID.parse(cid), bytes: Buffer.from(b64, 'base64') })
  }
  await writer.close()
  await done
  fs.writeFileSync(file, Buffer.concat(chunks))
} else {
  throw new Error(`unknown command ${cmd}`)
}
