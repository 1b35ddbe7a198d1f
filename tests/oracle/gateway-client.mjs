// Independent verifying client of a trustless gateway, for tests/service/test_gateway_verifying_client.py.
//
// usage: node gateway-client.mjs   (stdin: {"base": URL, "requests": [REQUEST, ...]}) -> {id: RESULT}
//   REQUEST: {"id", "root": CID, "path": [segment, ...], "format": "car" | "raw", "params": {...}}
//
// For a CAR it trusts nothing the gateway says: it re-hashes every block against its CID
// (multiformats' hashers), resolves the content path itself through the CAR's dag-pb and HAMT
// blocks (ipfs-unixfs-exporter's walkPath), reads the terminus in the asked scope from the CAR's
// blocks only, applies entity-bytes with the specification's semantics (its own walk of the
// file's blocksizes: the exporter over-reads one block at an exact boundary), and checks the CAR
// holds no block it did not need and that the blocks come in the depth-first order claimed.
// For raw it first resolves the path with a verified dag-scope=block CAR, then checks the body
// hashes to the CID it found. The output lets the test compare the bytes with the original file.
import { CarBlockIterator } from '@ipld/car/iterator'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { exporter, recursive, walkPath } from 'ipfs-unixfs-exporter'
import { CID } from 'multiformats/cid'
import { identity } from 'multiformats/hashes/identity'
import { sha256, sha512 } from 'multiformats/hashes/sha2'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'

const HASHERS = { [sha256.code]: sha256, [sha512.code]: sha512 }
const key = cid => cid.toV1().toString() // codec + multihash: a CIDv0 and its v1 are one block

/** A blockstore over the CAR's verified blocks that logs the first use of each. */
class CarStore {
  constructor (blocks) {
    this.blocks = blocks // key -> bytes
    this.used = [] // keys, in the order first asked for
    this.seen = new Set()
  }

  * get (cid) {
    if (cid.multihash.code === identity.code) {
      yield cid.multihash.digest
      return
    }
    const k = key(cid)
    const bytes = this.blocks.get(k)
    if (bytes === undefined) throw new Error(`block ${cid} is needed but not in the CAR`)
    if (!this.seen.has(k)) {
      this.seen.add(k)
      this.used.push(k)
    }
    yield bytes
  }

  async has (cid) { return this.blocks.has(key(cid)) }
}

const one = async source => {
  const parts = []
  for await (const p of source) parts.push(p)
  return Buffer.concat(parts)
}

async function verifyBlock (cid, bytes) {
  const hasher = HASHERS[cid.multihash.code]
  if (cid.multihash.code === identity.code) return 'an identity CID sent as a block'
  if (hasher === undefined) return `no hasher for multihash 0x${cid.multihash.code.toString(16)}`
  const digest = await hasher.digest(bytes)
  return Buffer.compare(Buffer.from(digest.bytes), Buffer.from(cid.multihash.bytes)) === 0
    ? null
    : `block ${cid} does not hash to its CID`
}

function mediaParams (contentType) {
  const [media, ...rest] = (contentType ?? '').split(';').map(s => s.trim())
  const params = {}
  for (const item of rest) {
    const [k, v = ''] = item.split('=')
    params[k.trim().toLowerCase()] = v.trim()
  }
  return { media, params }
}

function url (base, req, format) {
  const segments = req.path.map(encodeURIComponent).join('/')
  const query = new URLSearchParams({ format, ...(req.params ?? {}) })
  return `${base}/ipfs/${req.root}${segments ? '/' + segments : ''}?${query}`
}

function headersOf (res) {
  const out = {}
  for (const name of ['content-type', 'etag', 'x-ipfs-path', 'x-ipfs-roots', 'content-location']) {
    if (res.headers.has(name)) out[name] = res.headers.get(name)
  }
  return out
}

const digestOf = bytes => ({ sha256: createHash('sha256').update(bytes).digest('hex'), length: bytes.length })

/** entity-bytes against a file of `size` bytes, per the spec: [lo, hi] inclusive, or null if empty. */
function resolveRange (text, size) {
  const [from, to] = text.split(':')
  let lo = Number(from)
  lo = lo < 0 ? Math.max(0, size + lo) : lo
  let hi = to === '*' ? size - 1 : Number(to)
  hi = hi < 0 ? size + hi : Math.min(hi, size - 1)
  if (lo >= size || hi < lo) return null
  return [lo, hi]
}

/** Bytes [lo, hi] of the UnixFS file at `cid`, reading only the blocks that hold them. */
async function readRange (store, cid, lo, hi) {
  const out = []
  const walk = async (c, offset) => {
    const block = await one(store.get(c))
    if (c.code !== dagPb.code) {
      out.push(block.subarray(Math.max(0, lo - offset), Math.max(0, hi + 1 - offset)))
      return
    }
    const node = dagPb.decode(block)
    const file = UnixFS.unmarshal(node.Data)
    const data = file.data ?? new Uint8Array()
    out.push(Buffer.from(data).subarray(Math.max(0, lo - offset), Math.max(0, hi + 1 - offset)))
    let child = offset + data.length
    if (node.Links.length !== file.blockSizes.length) throw new Error(`${c}: links and blocksizes differ`)
    for (let i = 0; i < node.Links.length; i++) {
      const size = Number(file.blockSizes[i])
      if (child <= hi && child + size > lo) await walk(node.Links[i].Hash, child)
      child += size
    }
  }
  await walk(cid, 0)
  return Buffer.concat(out)
}

/** The depth-first pre-order of `wanted` blocks from `start`, each once (what order=dfs promises). */
function dfsOrder (blocks, start, wanted, seen) {
  const order = []
  const visit = cid => {
    const k = key(cid)
    if (cid.multihash.code === identity.code || !wanted.has(k) || seen.has(k)) return
    seen.add(k)
    order.push(k)
    if (cid.code === dagPb.code) for (const link of dagPb.decode(blocks.get(k)).Links) visit(link.Hash)
  }
  visit(start)
  return order
}

async function readTerminus (store, cid, scope, entityBytes, result) {
  const entry = await exporter(cid, store)
  result.terminus = { cid: entry.cid.toString(), type: entry.type }
  const isFile = entry.type === 'file' || entry.type === 'raw' || entry.type === 'identity'
  const size = isFile ? Number(entry.size) : null
  if (isFile) result.terminus.size = size
  if (scope === 'block') return
  if (isFile && entityBytes !== undefined) {
    const range = resolveRange(entityBytes, size)
    result.range = range
    if (range !== null) result.bytes = digestOf(await readRange(store, entry.cid, ...range))
    return // a zero-length range is dag-scope=block: the root block carries the size
  }
  if (isFile) {
    result.bytes = digestOf(await one(entry.content()))
  } else if (entry.type === 'directory' && scope === 'entity') {
    const entries = []
    for await (const e of entry.entries()) entries.push([e.name, e.cid.toString()])
    result.entries = entries.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))
  } else if (entry.type === 'directory') {
    const tree = {}
    for await (const e of recursive(cid, store)) {
      const file = await exporter(e.cid, store)
      if (file.type !== 'directory' && e.depth > 0) {
        tree[e.path.split('/').slice(1).join('/')] = digestOf(await one(file.content())).sha256
      }
    }
    result.tree = tree
  }
}

async function fetchCar (base, req) {
  const res = await fetch(url(base, req, 'car'), { headers: { Accept: 'application/vnd.ipld.car' } })
  const result = { status: res.status, headers: headersOf(res), error: null }
  const body = Buffer.from(await res.arrayBuffer())
  if (res.status !== 200) {
    result.body = body.toString('utf8').slice(0, 500)
    return result
  }
  const { media, params } = mediaParams(res.headers.get('content-type'))
  const problems = []
  const reader = await CarBlockIterator.fromBytes(body)
  result.car_version = reader.version
  result.car_roots = (await reader.getRoots()).map(String)
  if (media !== 'application/vnd.ipld.car' || params.version !== String(reader.version)) {
    problems.push(`Content-Type ${res.headers.get('content-type')} does not match a CARv${reader.version}`)
  }
  const blocks = new Map()
  const order = []
  result.duplicates = []
  result.bad_blocks = []
  try {
    for await (const { cid, bytes } of reader) {
      const bad = await verifyBlock(cid, bytes)
      if (bad !== null) {
        result.bad_blocks.push(cid.toString())
        problems.push(bad)
        continue // a verifying client drops the block: it is as good as missing
      }
      const k = key(cid)
      if (blocks.has(k)) result.duplicates.push(cid.toString())
      blocks.set(k, bytes)
      order.push(k)
    }
  } catch (err) {
    problems.push(`the CAR ends inside a block: ${err.message}`) // the blocks before it still count
  }
  result.blocks = order.length
  const store = new CarStore(blocks)
  const q = req.params ?? {}
  const scope = q['dag-scope'] ?? (q['entity-bytes'] !== undefined ? 'entity' : 'all')
  try {
    let last = null
    for await (const step of walkPath(`/ipfs/${req.root}/${req.path.join('/')}`, store)) last = step
    result.path_cids = last.roots.map(String)
    const pathBlocks = [...store.used]
    result.path_blocks = pathBlocks.length
    await readTerminus(store, last.cid, scope, q['entity-bytes'], result)
    const wanted = new Set(store.used)
    result.unused = order.filter(k => !wanted.has(k))
    if (params.order === 'dfs' && params.dups === 'n') {
      const expected = [...pathBlocks, ...dfsOrder(blocks, last.cid, wanted, new Set(pathBlocks))]
      result.order_ok = expected.length === order.length && expected.every((k, i) => k === order[i])
    }
    const roots = (res.headers.get('x-ipfs-roots') ?? '').split(',').filter(Boolean)
    if (req.path.length > 0 && !(roots.length === last.roots.length &&
        roots.every((r, i) => CID.parse(r).equals(last.roots[i])))) {
      problems.push(`X-Ipfs-Roots ${roots} is not the path's logical roots ${last.roots}`)
    }
  } catch (err) {
    problems.push(`${err.name}: ${err.message}`)
  }
  if (params.dups === 'n' && result.duplicates.length > 0) problems.push('dups=n but a block repeats')
  result.error = problems.length > 0 ? problems.join('; ') : null
  return result
}

async function fetchRaw (base, req) {
  // The path is resolved through a verified CAR first: a raw answer alone proves nothing about it.
  const located = await fetchCar(base, { ...req, params: { 'dag-scope': 'block' } })
  if (located.status !== 200 || located.error !== null) return { located, status: null, error: 'path not verified' }
  const cid = CID.parse(located.path_cids.at(-1))
  const res = await fetch(url(base, req, 'raw'), { headers: { Accept: 'application/vnd.ipld.raw' } })
  const body = Buffer.from(await res.arrayBuffer())
  const result = { status: res.status, headers: headersOf(res), cid: cid.toString(), error: null }
  if (res.status !== 200) {
    result.body = body.toString('utf8').slice(0, 500)
    return result
  }
  result.error = await verifyBlock(cid, body)
  result.block = digestOf(body)
  if (result.error === null) {
    const entry = await exporter(cid, new CarStore(new Map([[key(cid), body]])))
    if (entry.type === 'file' || entry.type === 'raw') {
      try {
        result.bytes = digestOf(await one(entry.content()))
      } catch {
        result.bytes = null // more than one block: the raw block alone does not hold the file
      }
    }
  }
  return result
}

const input = JSON.parse(fs.readFileSync(0, 'utf8'))
const out = {}
for (const req of input.requests) {
  try {
    out[req.id] = req.format === 'raw' ? await fetchRaw(input.base, req) : await fetchCar(input.base, req)
  } catch (err) {
    out[req.id] = { status: null, error: `${err.name}: ${err.message}` }
  }
}
process.stdout.write(JSON.stringify(out) + '\n')
