// Independent oracle for tests/cas/test_oracles.py: prints the UnixFS CID that the npm
// ipfs-unixfs-importer computes for a file or directory tree.
//
// usage: node unixfs-cid.mjs PATH [--v0 | --profile NAME] [--chunk BYTES] [--max-links N]
//                                 [--shard-threshold BYTES] [--blocks]
// --v0 uses the 'unixfs-v0-2015' profile (plain `ipfs add`); the default is the importer's
// defaults (`ipfs add --cid-version=1`). --blocks also prints every block (base64) so a test
// can read the DAG back with CATs' exporter. Output: one JSON object on stdout.
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import * as fs from 'node:fs'
import * as nodePath from 'node:path'

const args = process.argv.slice(2)
const target = args[0]
const opts = {}
let dumpBlocks = false
for (let i = 1; i < args.length; i++) {
  const a = args[i]
  if (a === '--v0') opts.profile = 'unixfs-v0-2015'
  else if (a === '--profile') opts.profile = args[++i]
  else if (a === '--chunk') opts.chunker = fixedSize({ chunkSize: Number(args[++i]) })
  else if (a === '--max-links') opts.layout = balanced({ maxChildrenPerNode: Number(args[++i]) })
  else if (a === '--shard-threshold') opts.shardSplitThresholdBytes = Number(args[++i])
  else if (a === '--blocks') dumpBlocks = true
  else throw new Error(`unknown option ${a}`)
}

function * candidates (abs, rel) {
  const st = fs.lstatSync(abs)
  if (st.isSymbolicLink()) {
    yield { path: rel, link: fs.readlinkSync(abs) }
  } else if (st.isDirectory()) {
    const names = fs.readdirSync(abs)
    if (names.length === 0) yield { path: rel }
    for (const name of names) yield * candidates(nodePath.join(abs, name), `${rel}/${name}`)
  } else {
    yield { path: rel, content: fs.readFileSync(abs) }
  }
}

// Keeps every block under its full CID (blockstore-core's memory store keys by multihash only).
const blocks = new Map()
const blockstore = {
  async put (cid, bytes) {
    blocks.set(cid.toString(), bytes)
    return cid
  }
}
const base = nodePath.basename(nodePath.resolve(target))
const isDir = fs.lstatSync(target).isDirectory()
const source = isDir ? candidates(target, base) : [{ content: fs.readFileSync(target) }]
let last
for await (const entry of importer(source, blockstore, opts)) last = entry
const out = { cid: last.cid.toString(), size: Number(last.size) }
if (dumpBlocks) {
  out.blocks = {}
  for (const [cid, bytes] of blocks) out.blocks[cid] = Buffer.from(bytes).toString('base64')
}
process.stdout.write(JSON.stringify(out) + '\n')
