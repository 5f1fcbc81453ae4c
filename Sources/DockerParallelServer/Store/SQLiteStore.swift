import DockerParallelCore
import Foundation
import GRDB
import GRDBSQLite

/// The broker's durable store: one SQLite database in WAL mode, written in batches (group commit).
///
/// With `synchronous = NORMAL` a committed batch survives the server process being killed; a
/// power loss may lose the last batches.
struct SQLiteStore: BrokerStore {
    private let database: DatabaseQueue
    /// How many servers started on this store before this one.
    let restarts: Int
    /// When the first server started on this store (seconds since 1970).
    let firstStarted: Double

    /// Opens or creates the database at `path`.
    /// - Throws: `.serverStartFailed` naming the file when it cannot be opened.
    init(path: String) throws {
        var configuration = Configuration()
        configuration.journalMode = .wal
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        do {
            database = try DatabaseQueue(path: path, configuration: configuration)
            try database.write { db in
                try db.execute(sql: """
                    CREATE TABLE IF NOT EXISTS jobs(
                        id TEXT PRIMARY KEY, options BLOB NOT NULL);
                    CREATE TABLE IF NOT EXISTS tasks(
                        job TEXT NOT NULL, idx INTEGER NOT NULL, kind BLOB NOT NULL, input BLOB,
                        attempts INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
                        PRIMARY KEY(job, idx)) WITHOUT ROWID;
                    CREATE TABLE IF NOT EXISTS results(
                        job TEXT NOT NULL, idx INTEGER NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
                        exit_code INTEGER, output BLOB NOT NULL, error_output BLOB NOT NULL, error TEXT,
                        PRIMARY KEY(job, idx)) WITHOUT ROWID;
                    CREATE TABLE IF NOT EXISTS attempts(
                        lease INTEGER, job TEXT NOT NULL, idx INTEGER NOT NULL, attempt INTEGER NOT NULL,
                        worker TEXT NOT NULL, started REAL NOT NULL, ended REAL, outcome TEXT NOT NULL, error TEXT);
                    CREATE UNIQUE INDEX IF NOT EXISTS attempts_by_lease ON attempts(lease);
                    CREATE INDEX IF NOT EXISTS attempts_by_task ON attempts(job, idx);
                    CREATE TABLE IF NOT EXISTS starts(at REAL NOT NULL);
                    """)
            }
            do {
                try database.write { db in
                    // Attempts that ran when the server stopped can only have been lost.
                    try db.execute(
                        sql: "UPDATE attempts SET outcome = 'lost', ended = ?, error = ? WHERE outcome = 'running'",
                        arguments: [Date().timeIntervalSince1970, "the server stopped while it ran"])
                    try db.execute(sql: "INSERT INTO starts(at) VALUES (?)", arguments: [Date().timeIntervalSince1970])
                }
            } catch where Self.isFull(error) {
                // On a full disk the server still starts: the attempt log and the count of
                // starts are brought up to date at its next start.
            }
            let starts = try database.read { db in
                try Row.fetchOne(db, sql: "SELECT count(*), min(at) FROM starts")
            }
            restarts = max(0, (starts?[0] as Int? ?? 1) - 1)
            firstStarted = starts?[1] as Double? ?? Date().timeIntervalSince1970
        } catch {
            throw DockerParallelError(
                .serverStartFailed,
                "cannot open the broker's database at \(path): \(error). Check the folder exists and is writable.",
                underlying: error)
        }
    }

    func load() throws -> [StoredJob] {
        let decoder = JSONDecoder()
        return try database.read { db in
            var jobs: [String: StoredJob] = [:]
            var order: [String] = []
            for row in try Row.fetchAll(db, sql: "SELECT id, options FROM jobs ORDER BY rowid") {
                let id: String = row["id"]
                let options = try decoder.decode(JobOptions.self, from: row["options"] as Data)
                jobs[id] = StoredJob(jobID: id, options: options, tasks: [], results: [])
                order.append(id)
            }
            let tasks = try Row.fetchCursor(db, sql: "SELECT job, idx, attempts, failures FROM tasks")
            while let row = try tasks.next() {
                let job: String = row[0]
                jobs[job]?.tasks.append((row[1], row[2], row[3]))
            }
            let results = try Row.fetchCursor(
                db, sql: "SELECT job, idx, status, attempts, exit_code, output, error_output, error FROM results")
            while let row = try results.next() {
                let job: String = row["job"]
                let exitCode: Int64? = row["exit_code"]
                jobs[job]?.results.append(TaskResult(
                    jobID: JobID(job), index: row["idx"], status: TaskStatus(rawValue: row["status"]) ?? .failed,
                    attempts: row["attempts"], exitCode: exitCode.map { Int32(truncatingIfNeeded: $0) },
                    output: row["output"], errorOutput: row["error_output"], error: row["error"]))
            }
            return order.compactMap { jobs[$0] }
        }
    }

    func lastLeaseID() throws -> UInt64 {
        try database.read { db in
            UInt64(try Int64.fetchOne(db, sql: "SELECT max(lease) FROM attempts") ?? 0)
        }
    }

    func payloads(_ keys: [TaskQueue.Key]) throws -> [(key: TaskQueue.Key, spec: TaskSpec?)] {
        try database.read { db in
            let select = try db.cachedStatement(sql: "SELECT kind, input FROM tasks WHERE job = ? AND idx = ?")
            return try keys.map { key in
                guard let row = try Row.fetchOne(select, arguments: [key.jobID, key.index]) else { return (key, nil) }
                let kind = try StoredTaskKind.decode(row[0] as Data)
                return (key, TaskSpec(index: key.index, kind: kind, input: (row[1] as Data?) ?? Data()))
            }
        }
    }

    func tasks(jobID: String) throws -> [TaskSpec] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT idx, kind, input FROM tasks WHERE job = ? ORDER BY idx", arguments: [jobID]).map { row in
                TaskSpec(index: row[0], kind: try StoredTaskKind.decode(row[1] as Data), input: (row[2] as Data?) ?? Data())
            }
        }
    }

    func attempts(jobID: String, index: Int?) throws -> [AttemptRecord] {
        try database.read { db in
            let columns = "lease, job, idx, attempt, worker, started, ended, outcome, error"
            let rows = if let index {
                try Row.fetchAll(
                    db, sql: "SELECT \(columns) FROM attempts WHERE job = ? AND idx = ? ORDER BY rowid",
                    arguments: [jobID, index])
            } else {
                try Row.fetchAll(db, sql: "SELECT \(columns) FROM attempts WHERE job = ? ORDER BY idx, rowid", arguments: [jobID])
            }
            return rows.map { row in
                let lease: Int64? = row[0]
                return AttemptRecord(
                    jobID: JobID(row[1] as String), index: row[2], attempt: row[3], leaseID: lease.map { LeaseID(UInt64($0)) }, worker: row[4],
                    started: row[5], ended: row[6], outcome: AttemptOutcome(rawValue: row[7]) ?? .lost, error: row[8])
            }
        }
    }

    /// SQLite reports a full disk (`ENOSPC`, a quota) as `SQLITE_FULL`, and rolls the
    /// transaction back.
    func isFull(_ error: any Error) -> Bool { Self.isFull(error) }

    /// Whether an error, or the error under a ``DockerParallelError``, is SQLite's full disk.
    static func isFull(_ error: (any Error)?) -> Bool {
        if let error = error as? DockerParallelError { return isFull(error.underlying) }
        return (error as? DatabaseError)?.resultCode == .SQLITE_FULL
    }

    func write(_ changes: [StoreChange]) throws {
        guard !changes.isEmpty else { return }
        try database.write { db in
            let insertAttempt = try FastStatement(db, """
                INSERT INTO attempts(lease, job, idx, attempt, worker, started, ended, outcome, error)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(lease) DO UPDATE SET ended = excluded.ended, outcome = excluded.outcome, error = excluded.error
                WHERE attempts.outcome = 'running'
                """)
            let insertResult = try FastStatement(db, """
                INSERT OR IGNORE INTO results(job, idx, status, attempts, exit_code, output, error_output, error)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """)
            // Small inputs stay: rewriting the row would cost more than the space it frees.
            let dropInput = try FastStatement(
                db, "UPDATE tasks SET input = NULL WHERE job = ? AND idx = ? AND length(input) > 256")
            let updateCounters = try FastStatement(db, "UPDATE tasks SET attempts = ?, failures = ? WHERE job = ? AND idx = ?")
            for change in changes {
                switch change {
                case .submit(let jobID, let options, let tasks):
                    try db.execute(
                        sql: "INSERT OR IGNORE INTO jobs(id, options) VALUES (?, ?)",
                        arguments: [jobID, try JSONEncoder().encode(options)])
                    let insert = try FastStatement(db, "INSERT OR IGNORE INTO tasks(job, idx, kind, input) VALUES (?, ?, ?, ?)")
                    // A job's tasks mostly share their kind: encode it once while it repeats.
                    var last: (kind: TaskSpec.Kind, encoded: Data)?
                    for task in tasks {
                        let encoded: Data
                        if let last, last.kind == task.kind {
                            encoded = last.encoded
                        } else {
                            encoded = StoredTaskKind.encode(task.kind)
                            last = (task.kind, encoded)
                        }
                        try insert.execute(db, .text(jobID), .int(task.index), .blob(encoded), .blob(task.input))
                    }
                case .counters(let jobID, let index, let attempts, let failures):
                    try updateCounters.execute(db, .int(attempts), .int(failures), .text(jobID), .int(index))
                case .result(let result):
                    try insertResult.execute(
                        db, .text(result.jobID.rawValue), .int(result.index), .text(result.status.rawValue), .int(result.attempts),
                        result.exitCode.map { .int(Int($0)) } ?? .null, .blob(result.output), .blob(result.errorOutput),
                        result.error.map { .text($0) } ?? .null)
                    if result.status == .succeeded {
                        // A failed task keeps its input, so that it can be retried.
                        try dropInput.execute(db, .text(result.jobID.rawValue), .int(result.index))
                    }
                case .retry(let jobID, let indices):
                    for index in indices {
                        try db.cachedStatement(sql: "DELETE FROM results WHERE job = ? AND idx = ?").execute(arguments: [jobID, index])
                        try db.cachedStatement(sql: "UPDATE tasks SET attempts = 0, failures = 0 WHERE job = ? AND idx = ?")
                            .execute(arguments: [jobID, index])
                    }
                case .attempt(let record):
                    try insertAttempt.execute(
                        db, record.leaseID.map { .int(Int(Int64(bitPattern: $0.rawValue))) } ?? .null, .text(record.jobID.rawValue), .int(record.index),
                        .int(record.attempt), .text(record.worker), .double(record.started), record.ended.map { .double($0) } ?? .null,
                        .text(record.outcome.rawValue), record.error.map { .text($0) } ?? .null)
                case .forget(let jobID):
                    for table in ["results", "tasks", "attempts"] {
                        try db.execute(sql: "DELETE FROM \(table) WHERE job = ?", arguments: [jobID])
                    }
                    try db.execute(sql: "DELETE FROM jobs WHERE id = ?", arguments: [jobID])
                }
            }
        }
    }
}

/// A cached statement run with its arguments bound through SQLite's C API: on the hot path,
/// GRDB's boxed arguments cost more than the statement itself.
private struct FastStatement {
    enum Value {
        case int(Int)
        case double(Double)
        case text(String)
        case blob(Data)
        case null
    }

    private let handle: OpaquePointer

    init(_ db: Database, _ sql: String) throws {
        handle = try db.cachedStatement(sql: sql).sqliteStatement
    }

    /// SQLite copies bound text and blobs.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    func execute(_ db: Database, _ values: Value...) throws {
        sqlite3_reset(handle)
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            switch value {
            case .int(let value): sqlite3_bind_int64(handle, index, Int64(value))
            case .double(let value): sqlite3_bind_double(handle, index, value)
            case .text(let value):
                var value = value
                value.withUTF8 { utf8 in
                    utf8.withMemoryRebound(to: CChar.self) { text in
                        if let base = text.baseAddress {
                            _ = sqlite3_bind_text(handle, index, base, Int32(text.count), Self.transient)
                        } else {
                            _ = sqlite3_bind_text(handle, index, "", 0, Self.transient)
                        }
                    }
                }
            case .blob(let value):
                // An empty blob, not NULL: SQLite binds a nil pointer as NULL.
                if value.isEmpty {
                    sqlite3_bind_zeroblob(handle, index, 0)
                } else {
                    value.withUnsafeBytes { _ = sqlite3_bind_blob(handle, index, $0.baseAddress, Int32($0.count), Self.transient) }
                }
            case .null: sqlite3_bind_null(handle, index)
            }
        }
        let code = sqlite3_step(handle)
        sqlite3_reset(handle)
        guard code == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
        }
    }
}
