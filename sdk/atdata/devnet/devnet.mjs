// atdata devnet launcher: an in-memory PLC directory and any number of reference
// PDSes in one Node 22 process, every socket on 127.0.0.1.
//
// Usage: node devnet.mjs <config.json>
//
// The config file (written by atdata.devnet) holds:
//   modules        folder whose node_modules has @atproto/pds and @did-plc/server
//   dataDir        scratch folder for the PDS SQLite files and blobs (wiped first)
//   plcPort        port of the PLC to start, or null to use plcUrl instead
//   plcUrl         an already running PLC (only read when plcPort is null)
//   pds            [{port, handleDomain, blobLimit}]
//   adminPassword  HTTP Basic password of the admin user on every PDS
//   parentPid      when set, shut down once that process is gone
//
// When every server listens, one line `ATDATA_DEVNET_READY <json>` goes to stdout.
// SIGTERM / SIGINT close the servers (draining websockets) and exit 0.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'

const started = Date.now()
const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const LOOPBACK = '127.0.0.1'

const requireFrom = createRequire(path.join(cfg.modules, 'package.json'))
const importPackage = async (name) => {
  // CommonJS packages: the named exports node detects, plus module.exports itself
  const ns = await import(pathToFileURL(requireFrom.resolve(name)).href)
  return { ...(ns.default ?? {}), ...ns }
}

// Express's app.listen(port) binds every interface. Pin the host to loopback by
// wrapping the method; xrpc-server has already wrapped it to attach the
// websocket upgrade handler, and calling through keeps that.
const onLoopback = (app) => {
  const listen = app.listen
  app.listen = (port, ...rest) => listen.call(app, port, LOOPBACK, ...rest)
}

const servers = [] // objects with destroy(), stopped in reverse order
let stopping = false
const shutdown = async (reason) => {
  if (stopping) return
  stopping = true
  console.error(`devnet stopping (${reason})`)
  for (const server of servers.reverse()) {
    try {
      await server.destroy()
    } catch (err) {
      console.error('error while stopping a server:', err)
    }
  }
  // the accounts' DIDs lived in a PLC that is gone (or not ours): the data is dead too
  if (cfg.pds.length) fs.rmSync(cfg.dataDir, { recursive: true, force: true })
  process.exit(0)
}
process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))

if (cfg.parentPid) {
  // Tied to the process that started us (a test session, the demo): a crashed or
  // killed parent must not leave a devnet behind.
  const timer = setInterval(() => {
    try {
      process.kill(cfg.parentPid, 0)
    } catch {
      shutdown(`parent ${cfg.parentPid} is gone`)
    }
  }, 1000)
  timer.unref()
}

let plcUrl = cfg.plcUrl
if (cfg.plcPort) {
  const plcModule = await importPackage('@did-plc/server')
  const plc = plcModule.PlcServer.create({ db: plcModule.Database.mock(), port: cfg.plcPort })
  onLoopback(plc.app)
  await plc.start()
  servers.push(plc)
  plcUrl = `http://localhost:${cfg.plcPort}`
}

const pdsInfo = []
if (cfg.pds.length) {
  const { PDS, envToCfg, envToSecrets } = await importPackage('@atproto/pds')
  fs.rmSync(cfg.dataDir, { recursive: true, force: true })
  for (const { port, handleDomain, blobLimit } of cfg.pds) {
    const dir = path.join(cfg.dataDir, `pds-${port}`)
    fs.mkdirSync(dir, { recursive: true })
    // The PDS reads the same settings from PDS_* variables; handing them over as
    // an object lets one process hold several PDSes with different settings.
    const env = {
      hostname: 'localhost', // public URL http://localhost:<port>; other names force https
      port,
      serviceDid: `did:web:localhost%3A${port}`,
      serviceHandleDomains: [handleDomain],
      dataDirectory: dir,
      blobstoreDiskLocation: path.join(dir, 'blobs'),
      blobUploadLimit: blobLimit,
      didPlcUrl: plcUrl,
      inviteRequired: false,
      devMode: true,
      jwtSecret: crypto.randomBytes(16).toString('hex'),
      adminPassword: cfg.adminPassword,
      // any 32 random bytes form a valid secp256k1 private key
      plcRotationKeyK256PrivateKeyHex: crypto.randomBytes(32).toString('hex'),
    }
    const pds = await PDS.create(envToCfg(env), envToSecrets(env))
    onLoopback(pds.app)
    await pds.start()
    servers.push(pds)
    pdsInfo.push({
      url: `http://localhost:${port}`,
      port,
      did: env.serviceDid,
      handleDomain,
      blobLimit,
    })
  }
}

const ready = {
  pid: process.pid,
  plcUrl,
  pds: pdsInfo,
  adminPassword: cfg.adminPassword,
  startupMs: Date.now() - started,
}
console.log('ATDATA_DEVNET_READY ' + JSON.stringify(ready))
