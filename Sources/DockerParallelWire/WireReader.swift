import DockerParallelCore
import Foundation
import NIOCore

/// Reads what ``WireWriter`` wrote, checking every length against the bytes left, so that hostile
/// input is an error and never a crash or a huge allocation.
package struct WireReader {
    private let buffer: UnsafeRawBufferPointer
    private var offset = 0

    init(_ buffer: UnsafeRawBufferPointer) {
        self.buffer = buffer
    }

    /// Reads the readable bytes of a buffer, without copying them.
    static func read<Value>(_ buffer: ByteBuffer, _ body: (inout WireReader) throws -> Value) rethrows -> Value {
        try buffer.withUnsafeReadableBytes { bytes in
            var reader = WireReader(bytes)
            return try body(&reader)
        }
    }

    var isAtEnd: Bool { offset == buffer.count }

    static func malformed(_ what: String) -> DockerParallelError {
        DockerParallelError(.protocolViolation, "malformed binary message: \(what)")
    }

    mutating func byte() throws -> UInt8 {
        guard offset < buffer.count else { throw Self.malformed("it ends early") }
        defer { offset += 1 }
        return buffer[offset]
    }

    mutating func varint() throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let next = try byte()
            guard shift < 64 else { throw Self.malformed("a varint is too long") }
            value |= UInt64(next & 0x7F) << shift
            if next < 0x80 { return value }
            shift += 7
        }
    }

    mutating func int() throws -> Int {
        let raw = try varint()
        let decoded = Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
        guard let value = Int(exactly: decoded) else { throw Self.malformed("an integer is out of range") }
        return value
    }

    mutating func int32() throws -> Int32 {
        guard let value = Int32(exactly: try int()) else { throw Self.malformed("an exit code is out of range") }
        return value
    }

    mutating func double() throws -> Double {
        guard buffer.count - offset >= 8 else { throw Self.malformed("it ends early") }
        var bits: UInt64 = 0
        withUnsafeMutableBytes(of: &bits) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + 8])) }
        offset += 8
        return Double(bitPattern: UInt64(littleEndian: bits))
    }

    /// A count of elements, each at least one byte long.
    mutating func count() throws -> Int {
        let count = try varint()
        guard count <= UInt64(buffer.count - offset) else { throw Self.malformed("a count exceeds the bytes left") }
        return Int(count)
    }

    private mutating func slice() throws -> UnsafeRawBufferPointer {
        let length = try count()
        defer { offset += length }
        return UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + length])
    }

    mutating func data() throws -> Data {
        Data(try slice())
    }

    mutating func string() throws -> String {
        let bytes = try slice()
        // Foundation's initializer, not String(validating:): that one needs macOS 15.
        guard let string = String(bytes: bytes, encoding: .utf8) else {
            throw Self.malformed("a string is not UTF-8")
        }
        return string
    }

    mutating func bool() throws -> Bool {
        switch try byte() {
        case 0: return false
        case 1: return true
        default: throw Self.malformed("a flag is neither 0 nor 1")
        }
    }

    mutating func optional<Value>(_ read: (inout WireReader) throws -> Value) throws -> Value? {
        try bool() ? read(&self) : nil
    }

    mutating func array<Element>(_ read: (inout WireReader) throws -> Element) throws -> [Element] {
        let count = try count()
        var values: [Element] = []
        values.reserveCapacity(count)
        for _ in 0..<count { values.append(try read(&self)) }
        return values
    }
}
