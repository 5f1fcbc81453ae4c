import DockerParallelCore
import Foundation
import GRDB

/// The broker's durable store: one SQLite database in WAL mode, written in batches (group commit).
///
/// With `synchronous = NORMAL` a committed batch survives the server process being killed; a
/// power loss may lose the last batches.
struct SQLiteStore: BrokerStore {
    private let database: DatabaseQueue

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
                    """)
                // Attempts that ran when the server stopped can only have been lost.
                try db.execute(
                    sql: "UPDATE attempts SET outcome = 'lost', ended = ?, error = ? WHERE outcome = 'running'",
                    arguments: [Date().timeIntervalSince1970, "the server stopped while it ran"])
            }
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
                    jobID: job, index: row["idx"], status: TaskStatus(rawValue: row["status"]) ?? .failed,
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
        let decoder = JSONDecoder()
        return try database.read { db in
            let select = try db.cachedStatement(sql: "SELECT kind, input FROM tasks WHERE job = ? AND idx = ?")
            return try keys.map { key in
                guard let row = try Row.fetchOne(select, arguments: [key.jobID, key.index]) else { return (key, nil) }
                let kind = try decoder.decode(TaskSpec.Kind.self, from: row[0] as Data)
                return (key, TaskSpec(index: key.index, kind: kind, input: (row[1] as Data?) ?? Data()))
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
                    jobID: row[1], index: row[2], attempt: row[3], leaseID: lease.map { UInt64($0) }, worker: row[4],
                    started: row[5], ended: row[6], outcome: AttemptOutcome(rawValue: row[7]) ?? .lost, error: row[8])
            }
        }
    }

    func write(_ changes: [StoreChange]) throws {
        guard !changes.isEmpty else { return }
        let encoder = JSONEncoder()
        try database.write { db in
            for change in changes {
                switch change {
                case .submit(let jobID, let options, let tasks):
                    try db.execute(
                        sql: "INSERT OR IGNORE INTO jobs(id, options) VALUES (?, ?)",
                        arguments: [jobID, try encoder.encode(options)])
                    let insert = try db.cachedStatement(
                        sql: "INSERT OR IGNORE INTO tasks(job, idx, kind, input) VALUES (?, ?, ?, ?)")
                    for task in tasks {
                        try insert.execute(arguments: [jobID, task.index, try encoder.encode(task.kind), task.input])
                    }
                case .counters(let jobID, let index, let attempts, let failures):
                    try db.cachedStatement(sql: "UPDATE tasks SET attempts = ?, failures = ? WHERE job = ? AND idx = ?")
                        .execute(arguments: [attempts, failures, jobID, index])
                case .result(let result):
                    try db.cachedStatement(sql: """
                        INSERT OR IGNORE INTO results(job, idx, status, attempts, exit_code, output, error_output, error)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                        """).execute(arguments: [
                            result.jobID, result.index, result.status.rawValue, result.attempts,
                            result.exitCode.map { Int64($0) }, result.output, result.errorOutput, result.error,
                        ])
                    if result.status == .succeeded {
                        // A failed task keeps its input, so that it can be retried.
                        try db.cachedStatement(sql: "UPDATE tasks SET input = NULL WHERE job = ? AND idx = ?")
                            .execute(arguments: [result.jobID, result.index])
                    }
                case .retry(let jobID, let indices):
                    for index in indices {
                        try db.cachedStatement(sql: "DELETE FROM results WHERE job = ? AND idx = ?").execute(arguments: [jobID, index])
                        try db.cachedStatement(sql: "UPDATE tasks SET attempts = 0, failures = 0 WHERE job = ? AND idx = ?")
                            .execute(arguments: [jobID, index])
                    }
                case .attempt(let record):
                    try db.cachedStatement(sql: """
                        INSERT INTO attempts(lease, job, idx, attempt, worker, started, ended, outcome, error)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                        ON CONFLICT(lease) DO UPDATE SET ended = excluded.ended, outcome = excluded.outcome, error = excluded.error
                        WHERE attempts.outcome = 'running'
                        """).execute(arguments: [
                            record.leaseID.map { Int64($0) }, record.jobID, record.index, record.attempt, record.worker,
                            record.started, record.ended, record.outcome.rawValue, record.error,
                        ])
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
