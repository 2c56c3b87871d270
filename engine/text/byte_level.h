// The GPT-2 byte <-> character mapping of byte-level BPE: every byte value is shown as one
// printable character (printable Latin-1 bytes as themselves, the others as U+0100 onwards).
// Immutable tables built on first use; safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace para::text {

// The character that stands for byte `b`.
char32_t ByteToChar(uint8_t b);
// The byte a character stands for, if it is one of the 256 characters.
std::optional<uint8_t> CharToByte(char32_t c);
// The bytes `token` stands for when every character of it is a byte character; otherwise the
// token's own UTF-8 (what the ByteLevel decoder does for a token it cannot map).
std::string ByteLevelTokenBytes(std::string_view token);

}  // namespace para::text
