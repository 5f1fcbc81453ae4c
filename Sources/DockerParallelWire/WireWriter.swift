import Foundation
import NIOCore

/// Appends the compact binary layout of hot-path messages to a `ByteBuffer`: unsigned LEB128
/// varints, zigzag for signed integers, little-endian IEEE doubles, and byte strings prefixed by
/// their varint length.
package struct WireWriter {
    /// The bytes written so far.
    package private(set) var buffer: ByteBuffer

    /// Creates an empty writer.
    package init(capacity: Int = 64) {
        buffer = ByteBufferAllocator().buffer(capacity: capacity)
    }

    mutating func byte(_ value: UInt8) {
        buffer.writeInteger(value)
    }

    mutating func varint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            buffer.writeInteger(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        buffer.writeInteger(UInt8(value))
    }

    mutating func int(_ value: Int) {
        let wide = Int64(value)
        varint(UInt64(bitPattern: (wide << 1) ^ (wide >> 63)))
    }

    mutating func double(_ value: Double) {
        buffer.writeInteger(value.bitPattern, endianness: .little)
    }

    mutating func data(_ value: Data) {
        varint(UInt64(value.count))
        buffer.writeBytes(value)
    }

    mutating func string(_ value: String) {
        varint(UInt64(value.utf8.count))
        buffer.writeString(value)
    }

    mutating func optional<Value>(_ value: Value?, _ write: (inout WireWriter, Value) -> Void) {
        guard let value else { return byte(0) }
        byte(1)
        write(&self, value)
    }

    mutating func array<Element>(_ values: [Element], _ write: (inout WireWriter, Element) -> Void) {
        varint(UInt64(values.count))
        for value in values { write(&self, value) }
    }
}
