"""QUIC analyser (protocols/quic.py): Initial key derivation and packet
protection against the published test vectors of RFC 9001 Appendix A (QUIC
v1) and RFC 9369 Appendix A (QUIC v2) -- an oracle independent of this code
-- then the analyser itself on those packets and on packets protected here
(the protection keys being the RFC-checked ones): Retry, coalesced and
reordered packets, the end of analysis at the hellos, malformed and
truncated input (weird) and input that is not QUIC (violation)."""
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from analyser import ORIG, RESP
from analyser.testing import run
from protocols import quic
from protocols.tls import parse_server_hello

DCID = bytes.fromhex("8394c8f03e515708")      # RFC 9001 / RFC 9369 Appendix A

# -- RFC 9001 Appendix A ---------------------------------------------------------------------

V1_CLIENT_INITIAL = bytes.fromhex(                       # A.2, the 1200-byte datagram
    "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11"
    "d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399"
    "1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c"
    "8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212"
    "30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5"
    "457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208"
    "4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec"
    "4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3"
    "485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db"
    "059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c"
    "7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8"
    "9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556"
    "be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74"
    "68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a"
    "c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00"
    "f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632"
    "291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964"
    "25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd"
    "14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff"
    "ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198"
    "e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd"
    "c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73"
    "203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f"
    "cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e"
    "fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade"
    "a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047"
    "90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2"
    "162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4"
    "40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0"
    "6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e"
    "8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0"
    "be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400"
    "54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab"
    "760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9"
    "f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4"
    "056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064"
    "7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241"
    "e221af44860018ab0856972e194cd934")
# A.2: the client's CRYPTO frame (a ClientHello for example.com, ALPN "alpn");
# PADDING fills the payload to 1162 bytes.
CLIENT_CRYPTO_FRAME = bytes.fromhex(
    "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868"
    "04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578"
    "616d706c652e636f6dff01000100000a00080006001d00170018001000070005"
    "04616c706e000500050100000000003300260024001d00209370b2c9caa47fba"
    "baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400"
    "0d0010000e0403050306030203080408050806002d00020101001c0002400100"
    "3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000"
    "75300901100f088394c8f03e51570806048000ffff")
V1_SERVER_INITIAL = bytes.fromhex(                       # A.3
    "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a"
    "5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3"
    "dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84"
    "022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4"
    "2158407dd074ee")
# A.3: an ACK frame, then the CRYPTO frame with the ServerHello.
SERVER_PAYLOAD = bytes.fromhex(
    "02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf739"
    "88cfc79825df566dc5430b9a045a1200130100002e00330024001d00209d3c94"
    "0d89690b84d08a60993c144eca684d1081287c834d5311bcf32bb9da1a002b00"
    "020304")
V1_RETRY = bytes.fromhex(                                # A.4, for the DCID above
    "ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba")

# -- RFC 9369 Appendix A (QUIC v2: same DCID, frames and hellos) ------------------------------

V2_CLIENT_INITIAL = bytes.fromhex(
    "d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485"
    "dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04"
    "9f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d21f57c5d"
    "250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a"
    "12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500"
    "cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd68"
    "18f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff33"
    "12ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3"
    "d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd"
    "6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520"
    "bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045"
    "636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1f"
    "ac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c12"
    "16ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e5"
    "4df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4"
    "fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b"
    "8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de7"
    "14d19d61370f8149748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff9"
    "9c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151adfeceb51b91"
    "abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd"
    "80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db"
    "848265e3e5eb72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18"
    "d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15"
    "c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc"
    "7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61"
    "f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e70710"
    "10d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b"
    "3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e"
    "06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce"
    "8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1"
    "34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1"
    "e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd"
    "5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e3"
    "8d209d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89"
    "d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53"
    "6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb19"
    "9a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96b"
    "a18b2faa745b6fe189cf772a9f84cbfc")
V2_SERVER_INITIAL = bytes.fromhex(
    "dc6b3343cf0008f067a5502a4262b5004075d92faaf16f05d8a4398c47089698"
    "baeea26b91eb761d9b89237bbf87263017915358230035f7fd3945d88965cf17"
    "f9af6e16886c61bfc703106fbaf3cb4cfa52382dd16a393e42757507698075b2"
    "c984c707f0a0812d8cd5a6881eaf21ceda98f4bd23f6fe1a3e2c43edd9ce7ca8"
    "4bed8521e2e140")
V2_RETRY = bytes.fromhex(
    "cf6b3343cf0008f067a5502a4262b5746f6b656ec8646ce8bfe33952d955543665dcc7b6")


# -- key schedule and packet protection -------------------------------------------------------

def test_rfc9001_initial_secrets_and_keys():
    initial = quic.hkdf_extract(quic.SALT_V1, DCID)
    assert initial.hex() == "7db5df06e7a69e432496adedb00851923595221596ae2ae9fb8115c1e9ed0a44"
    client, server = quic.initial_keys(quic.VERSION_1, DCID)
    assert client.secret.hex() == \
        "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea"
    assert (client.key.hex(), client.iv.hex(), client.hp.hex()) == (
        "1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c",
        "9f50449e04a0e810283a1e9933adedd2")
    assert server.secret.hex() == \
        "3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b"
    assert (server.key.hex(), server.iv.hex(), server.hp.hex()) == (
        "cf3a5331653c364c88f0f379b6067e37", "0ac1493ca1905853b0bba03e",
        "c206b8d9b9f0f37644430b490eeaa314")


def test_rfc9369_v2_initial_secrets_and_keys():
    assert quic.hkdf_extract(quic.SALT_V2, DCID).hex() == \
        "2062e8b3cd8d52092614b8071d0aa1fb7c2e3ac193f78b280e72d8f5751f6aba"
    client, server = quic.initial_keys(quic.VERSION_2, DCID)
    assert client.secret.hex() == \
        "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b"
    assert (client.key.hex(), client.iv.hex(), client.hp.hex()) == (
        "8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f",
        "45b95e15235d6f45a6b19cbcb0294ba9")
    assert server.secret.hex() == \
        "0263db1782731bf4588e7e4d93b7463907cb8cd8200b5da55a8bd488eafc37c1"
    assert (server.key.hex(), server.iv.hex(), server.hp.hex()) == (
        "82db637861d55e1d011f19ea71d5d2a7", "dd13c276499c0249d3310652",
        "edf6d05c83121201b436e16877593c3a")


@pytest.mark.parametrize("version,client_packet", [(quic.VERSION_1, V1_CLIENT_INITIAL),
                                                   (quic.VERSION_2, V2_CLIENT_INITIAL)])
def test_published_client_initial_decrypts_to_its_crypto_frame(version, client_packet):
    header = quic.parse_long_header(client_packet, 0)
    assert (header.kind, header.version, header.dcid, header.scid, header.token) == \
        ("initial", version, DCID, b"", b"")
    assert header.end == len(client_packet) == 1200
    keys = quic.initial_keys(version, DCID)[0]
    number, payload = quic.unprotect(client_packet, header, keys, -1)
    assert number == 2
    assert len(payload) == 1162
    assert payload[:len(CLIENT_CRYPTO_FRAME)] == CLIENT_CRYPTO_FRAME
    assert payload[len(CLIENT_CRYPTO_FRAME):] == bytes(1162 - len(CLIENT_CRYPTO_FRAME))
    frames, odd = quic.parse_frames(payload)
    assert odd == [] and len(frames) == 1
    assert frames[0][:2] == ("crypto", 0) and len(frames[0][2]) == 0xF1


@pytest.mark.parametrize("version,server_packet", [(quic.VERSION_1, V1_SERVER_INITIAL),
                                                   (quic.VERSION_2, V2_SERVER_INITIAL)])
def test_published_server_initial_decrypts_to_ack_and_server_hello(version, server_packet):
    header = quic.parse_long_header(server_packet, 0)
    assert (header.kind, header.dcid, header.scid) == \
        ("initial", b"", bytes.fromhex("f067a5502a4262b5"))
    number, payload = quic.unprotect(server_packet, header,
                                     quic.initial_keys(version, DCID)[1], -1)
    assert number == 1
    assert payload == SERVER_PAYLOAD
    frames, _ = quic.parse_frames(payload)                 # the ACK is skipped
    assert [f[:2] for f in frames] == [("crypto", 0)]
    hello = parse_server_hello(frames[0][2][4:])
    assert (hello.cipher, hello.key_share_group, hello.selected_version) == \
        (0x1301, 0x001D, 0x0304)


def test_a_flipped_bit_fails_decryption():
    corrupt = bytearray(V1_CLIENT_INITIAL)
    corrupt[600] ^= 1
    header = quic.parse_long_header(bytes(corrupt), 0)
    with pytest.raises(quic.Crypto.load().InvalidTag):
        quic.unprotect(bytes(corrupt), header, quic.initial_keys(1, DCID)[0], -1)


@pytest.mark.parametrize("retry", [V1_RETRY, V2_RETRY])
def test_published_retry_integrity_tag(retry):
    header = quic.parse_long_header(retry, 0)
    assert header.kind == "retry"
    assert header.token == b"token"
    assert header.scid == bytes.fromhex("f067a5502a4262b5")
    assert quic.retry_integrity_ok(retry, header, DCID) is True
    assert quic.retry_integrity_ok(retry, header, DCID[:-1] + b"\x00") is False


def test_packet_number_decoding_rfc9000_a3():
    # RFC 9000 Appendix A.3's example.
    assert quic.decode_packet_number(0x9B32, 16, 0xA82F30EA) == 0xA82F9B32
    assert quic.decode_packet_number(2, 32, -1) == 2


def test_varints_rfc9000_a1():
    # RFC 9000 Appendix A.1's examples.
    for encoded, value in (("c2197c5eff14e88c", 151288809941952652), ("9d7f3e7d", 494878333),
                           ("7bbd", 15293), ("25", 37), ("4025", 37)):
        data = bytes.fromhex(encoded)
        assert quic.read_varint(data, 0) == (value, len(data))
    with pytest.raises(quic.Malformed):
        quic.read_varint(bytes.fromhex("9d7f3e"), 0)


# -- the analyser on the published packets ----------------------------------------------------

@pytest.mark.parametrize("version,name,client_packet,server_packet", [
    (quic.VERSION_1, "1", V1_CLIENT_INITIAL, V1_SERVER_INITIAL),
    (quic.VERSION_2, "quicv2", V2_CLIENT_INITIAL, V2_SERVER_INITIAL)])
def test_analyser_logs_the_published_handshake(version, name, client_packet, server_packet):
    result = run(quic.Quic, [(ORIG, client_packet), (RESP, server_packet)])
    assert result.confirmed and result.services == ["quic", "ssl"]
    assert result.violations == [] and result.of("weird") == []
    (row,) = result.logs["quic"]
    assert {k: row.get(k) for k in ("version", "client_initial_dcid", "client_scid",
                                    "server_scid", "server_name", "client_protocol",
                                    "history")} == {
        "version": name, "client_initial_dcid": "8394c8f03e515708", "client_scid": "",
        "server_scid": "f067a5502a4262b5", "server_name": "example.com",
        "client_protocol": "alpn", "history": "ISis"}
    (ssl,) = result.logs["ssl"]
    assert {k: ssl.get(k) for k in ("version", "cipher", "curve", "server_name", "resumed",
                                    "next_protocol", "established", "ssl_history")} == {
        "version": "TLSv13", "cipher": "TLS_AES_128_GCM_SHA256", "curve": "x25519",
        "server_name": "example.com", "resumed": False, "next_protocol": None,
        "established": False, "ssl_history": "Cs"}
    assert ssl["ja4"].startswith("q13d")            # JA4 over QUIC


def test_signatures_match_v1_and_v2_initials_only():
    sigs = quic.Quic.signatures
    assert any(s.matches(V1_CLIENT_INITIAL) for s in sigs)
    assert any(s.matches(V2_CLIENT_INITIAL) for s in sigs)
    dns_query = bytes.fromhex("12340100000100000000000003777777076578616d706c6503636f6d0000010001")
    assert not any(s.matches(dns_query) for s in sigs)
    # As Zeek's dpd.sig: v1 and v2 only (a draft-29 Initial is found by port).
    assert not any(s.matches(b"\xc0\xff\x00\x00\x1d" + V1_CLIENT_INITIAL[5:]) for s in sigs)
    assert all(s.side == ORIG for s in sigs)


# -- packets protected here -------------------------------------------------------------------

def varint(value: int) -> bytes:
    for size, prefix in ((1, 0), (2, 0x40), (4, 0x80), (8, 0xC0)):
        if value < 1 << (8 * size - 2):
            return (value | prefix << (8 * size - 8)).to_bytes(size, "big")
    raise ValueError(value)


def protect(keys, first: int, rest_of_header: bytes, number: int, payload: bytes) -> bytes:
    """An Initial/Handshake packet (RFC 9001 §5.3, §5.4) with a 2-byte packet
    number, sealed with `keys`; `rest_of_header` ends before the Length."""
    header = bytes([first | 0x01]) + rest_of_header + varint(2 + len(payload) + 16) \
        + number.to_bytes(2, "big")
    pn_offset = len(header) - 2
    sealed = AESGCM(keys.key).encrypt(keys.nonce(number), payload, header)
    encryptor = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()
    mask = encryptor.update(sealed[2:18])
    return (bytes([header[0] ^ (mask[0] & 0x0F)]) + header[1:pn_offset]
            + bytes(b ^ m for b, m in zip(header[pn_offset:], mask[1:3])) + sealed)


def long_header(version: int, kind: str, dcid: bytes, scid: bytes, token: bytes = b"") -> tuple:
    types = quic.VERSIONS[version].types
    first = 0xC0 | types.index(kind) << 4
    rest = struct.pack("!I", version) + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    if kind == "initial":
        rest += varint(len(token)) + token
    return first, rest


def initial(side, dcid_for_keys, dcid, scid, payload, number=0, version=1, token=b"", pad=True):
    keys = quic.initial_keys(version, dcid_for_keys)[0 if side == ORIG else 1]
    if pad and len(payload) < 1100:
        payload = payload + bytes(1100 - len(payload))      # PADDING frames
    first, rest = long_header(version, "initial", dcid, scid, token)
    return protect(keys, first, rest, number, payload)


def crypto_frame(offset: int, data: bytes) -> bytes:
    return b"\x06" + varint(offset) + varint(len(data)) + data


def client_hello(server_name: str = "quic.example", alpn=(b"h3",), psk: bool = False,
                 transport: bytes = b"") -> bytes:
    def ext(kind, body):
        return struct.pack("!HH", kind, len(body)) + body
    name = server_name.encode()
    sni = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    protocols = b"".join(bytes([len(p)]) + p for p in alpn)
    extensions = (ext(0, sni) + ext(16, struct.pack("!H", len(protocols)) + protocols)
                  + ext(43, b"\x02\x03\x04") + ext(10, b"\x00\x02\x00\x1d")
                  + ext(51, b"\x00\x24\x00\x1d\x00\x20" + bytes(32)))
    if transport:
        extensions += ext(0x39, transport)
    if psk:
        extensions += ext(41, b"\x00\x0b\x00\x05abcde\x00\x00\x00\x00\x00\x21\x20" + bytes(32))
    body = (b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + struct.pack("!H", len(extensions)) + extensions)
    return b"\x01" + len(body).to_bytes(3, "big") + body


def server_hello(psk: bool = False) -> bytes:
    extensions = (b"\x00\x2b\x00\x02\x03\x04" + b"\x00\x33\x00\x24\x00\x1d\x00\x20" + bytes(32))
    if psk:
        extensions += b"\x00\x29\x00\x02\x00\x00"
    body = (b"\x03\x03" + bytes(range(32)) + b"\x00" + b"\x13\x01" + b"\x00"
            + struct.pack("!H", len(extensions)) + extensions)
    return b"\x02" + len(body).to_bytes(3, "big") + body


CLIENT_DCID, CLIENT_SCID, SERVER_SCID = bytes(range(1, 9)), b"\xcc" * 4, b"\x55" * 8


def handshake_datagrams(dcid=CLIENT_DCID, token=b"", **hello):
    """A client Initial with its ClientHello, the server's Initial with the
    ServerHello coalesced with a Handshake packet (opaque to us)."""
    client = initial(ORIG, dcid, dcid, CLIENT_SCID, crypto_frame(0, client_hello(**hello)),
                     token=token)
    first, rest = long_header(1, "handshake", CLIENT_SCID, SERVER_SCID)
    handshake = bytes([first | 1]) + rest + varint(60) + bytes(60)
    server = initial(RESP, dcid, CLIENT_SCID, SERVER_SCID,
                     b"\x02\x00\x00\x00\x00" + crypto_frame(0, server_hello()), pad=False)
    return [(ORIG, client), (RESP, server + handshake)]


def row(result, index=0):
    return result.logs["quic"][index]


def test_coalesced_initial_and_handshake_and_end_of_analysis_at_the_hellos():
    short = bytes([0x40]) + CLIENT_SCID + bytes(40)
    after = [(ORIG, short), (RESP, b"\x00 not even QUIC")]
    result = run(quic.Quic, handshake_datagrams() + after)
    assert row(result)["history"] == "ISish"
    assert row(result)["client_protocol"] == "h3" and row(result)["server_name"] == "quic.example"
    assert result.logs["ssl"][0]["ssl_history"] == "Cs"
    # What came after the hellos was not read: no 'O', no weird for the junk.
    assert result.of("weird") == []
    # With history_datagrams the headers of later datagrams are read too.
    result = run(quic.Quic, handshake_datagrams() + after, config={"history_datagrams": 10})
    # 'O': the first short-header packet; 'x': a packet with its fixed bit
    # clear, after Initials were decrypted (Zeek's discarded_packet).
    assert row(result)["history"] == "ISishOx"
    assert result.of("weird") == []


def test_zero_padding_after_a_decrypted_packet_is_a_discarded_packet():
    (c, client), (s, server) = handshake_datagrams()
    result = run(quic.Quic, [(c, client + bytes(30)), (s, server)])
    assert row(result)["history"] == "ISXish"


def test_crypto_frames_reassembled_out_of_order_across_packets():
    hello = client_hello(server_name="split.example")
    first_half, second_half = hello[:100], hello[100:]
    later = initial(ORIG, CLIENT_DCID, CLIENT_DCID, CLIENT_SCID, crypto_frame(100, second_half),
                    number=0)
    earlier = initial(ORIG, CLIENT_DCID, CLIENT_DCID, CLIENT_SCID, crypto_frame(0, first_half),
                      number=1)
    result = run(quic.Quic, [(ORIG, later), (ORIG, earlier)] + handshake_datagrams()[1:])
    assert result.of("weird") == []
    assert row(result)["server_name"] == "split.example"
    assert row(result)["history"] == "IISish"
    assert result.logs["ssl"][0]["server_name"] == "split.example"


def test_retry_starts_a_new_quic_row_with_keys_from_the_new_dcid():
    first_dcid, second_dcid = b"\x11" * 8, b"\x22" * 12
    first = initial(ORIG, first_dcid, first_dcid, CLIENT_SCID, crypto_frame(0, client_hello()))
    rfirst, rrest = long_header(1, "retry", CLIENT_SCID, SERVER_SCID)
    unsigned = bytes([rfirst]) + rrest + b"retry-token"
    key, nonce = quic.RETRY_V1
    tag = AESGCM(key).encrypt(nonce, b"", bytes([len(first_dcid)]) + first_dcid + unsigned)
    script = [(ORIG, first), (RESP, unsigned + tag)]
    script += handshake_datagrams(dcid=second_dcid, token=b"retry-token")
    result = run(quic.Quic, script)
    assert result.of("weird") == []
    first_row, second_row = result.logs["quic"]
    assert (first_row["client_initial_dcid"], first_row.get("server_scid"),
            first_row["history"]) == (first_dcid.hex(), None, "ISr")
    assert (second_row["client_initial_dcid"], second_row["server_scid"],
            second_row["history"]) == (second_dcid.hex(), SERVER_SCID.hex(), "ISish")
    (ssl,) = result.logs["ssl"]
    assert ssl["ssl_history"] == "CCs" and ssl["cipher"] == "TLS_AES_128_GCM_SHA256"

    # A Retry whose tag does not match the client's original DCID is a weird.
    script[1] = (RESP, unsigned + bytes(16))
    result = run(quic.Quic, script)
    assert [w["name"] for w in result.of("weird")] == ["QUIC_retry_integrity_tag_mismatch"]


def test_psk_accepted_by_the_server_is_a_resumption():
    client = initial(ORIG, CLIENT_DCID, CLIENT_DCID, CLIENT_SCID,
                     crypto_frame(0, client_hello(psk=True)))
    server = initial(RESP, CLIENT_DCID, CLIENT_SCID, SERVER_SCID,
                     crypto_frame(0, server_hello(psk=True)), pad=False)
    result = run(quic.Quic, [(ORIG, client), (RESP, server)])
    assert result.logs["ssl"][0]["resumed"] is True
    result = run(quic.Quic, handshake_datagrams())
    assert result.logs["ssl"][0]["resumed"] is False


def test_many_alpn_protocols_weird_as_zeek():
    result = run(quic.Quic, handshake_datagrams(alpn=(b"h3", b"h3-29")))
    assert row(result)["client_protocol"] == "h3"
    assert [(w["name"], w.get("protocols")) for w in result.of("weird")] == \
        [("QUIC_many_protocols", "h3,h3-29")]


def test_client_hello_only_still_logs_both_rows_at_the_end():
    result = run(quic.Quic, handshake_datagrams()[:1])
    assert row(result)["history"] == "IS"
    ssl = result.logs["ssl"][0]
    assert (ssl["ssl_history"], ssl.get("version"), ssl["server_name"]) == \
        ("C", None, "quic.example")


# -- malformed, truncated, not QUIC -----------------------------------------------------------

def names(result):
    return [w["name"] for w in result.of("weird")]


def test_truncated_first_initial_is_a_violation():
    client = handshake_datagrams()[0][1]
    result = run(quic.Quic, [(ORIG, client[:500])])
    assert not result.confirmed and result.services == []
    (violation,) = result.violations
    assert violation["failure_reason"].startswith("malformed QUIC long header: packet length")


def test_truncated_packet_after_confirmation_is_a_weird():
    (c, client), (s, server) = handshake_datagrams()
    result = run(quic.Quic, [(c, client), (s, server[:60])])
    assert result.confirmed and result.violations == []
    assert names(result) == ["QUIC_malformed_packet"]
    assert row(result)["history"] == "IS"


def test_decryption_failure_before_and_after_confirmation():
    (c, client), (s, server) = handshake_datagrams()
    bad_client = client[:-1] + bytes([client[-1] ^ 1])
    result = run(quic.Quic, [(c, bad_client), (s, server)])
    assert not result.confirmed
    assert result.violations[0]["failure_reason"] == "QUIC Initial decryption failed"
    assert row(result)["history"] == "I"           # what Zeek logs for it too
    bad_server = server[:80] + bytes([server[80] ^ 1]) + server[81:]
    result = run(quic.Quic, [(c, client), (s, bad_server)])
    assert result.confirmed and result.violations == []
    assert names(result) == ["QUIC_decryption_failed"]


def test_malformed_hello_and_oversized_crypto_message_are_weirds():
    garbage = b"\x01\x00\x00\x10" + b"\xff" * 16                 # a ClientHello that is not
    client = initial(ORIG, CLIENT_DCID, CLIENT_DCID, CLIENT_SCID, crypto_frame(0, garbage))
    result = run(quic.Quic, [(ORIG, client)])
    assert result.confirmed and names(result) == ["QUIC_malformed_hello"]
    assert "ssl" not in result.logs
    huge = b"\x01\x01\x00\x00" + bytes(100)                      # 65536-byte message
    client = initial(ORIG, CLIENT_DCID, CLIENT_DCID, CLIENT_SCID, crypto_frame(0, huge))
    result = run(quic.Quic, [(ORIG, client)])
    assert names(result) == ["QUIC_malformed_crypto"]


def test_malformed_frame_is_a_weird_and_frames_before_it_count():
    payload = crypto_frame(0, client_hello()) + b"\x06\x00\x40"      # CRYPTO cut short
    client = initial(ORIG, CLIENT_DCID, CLIENT_DCID, CLIENT_SCID, payload, pad=False)
    result = run(quic.Quic, [(ORIG, client)])
    assert names(result) == ["QUIC_malformed_frame"]
    assert row(result)["server_name"] == "quic.example"


def test_stream_frame_in_an_initial_is_a_weird():
    payload = crypto_frame(0, client_hello()) + b"\x0a\x04\x03abc"      # STREAM with length
    client = initial(ORIG, CLIENT_DCID, CLIENT_DCID, CLIENT_SCID, payload)
    result = run(quic.Quic, [(ORIG, client)])
    assert [(w["name"], w["frame_type"]) for w in result.of("weird")] == \
        [("QUIC_frame_not_allowed_in_initial", "0xa")]


def test_connection_close_in_an_initial_ends_the_row():
    close = b"\x1c\x0a\x00\x03bye"
    client = initial(ORIG, CLIENT_DCID, CLIENT_DCID, CLIENT_SCID,
                     close + crypto_frame(0, client_hello()))
    result = run(quic.Quic, [(ORIG, client)])
    assert row(result)["history"] == "IC"
    assert "server_name" not in row(result)


@pytest.mark.parametrize("payload,reason", [
    (bytes.fromhex("12340100000100000000000003777777076578616d706c6503636f6d0000010001"),
     "not a QUIC packet: fixed bit clear"),
    (b"\x40" + bytes(30), "not a QUIC long header at the start"),
    (b"\xc0\x00\x00\x00", "malformed QUIC long header: truncated long header"),
])
def test_not_quic_is_a_violation(payload, reason):
    result = run(quic.Quic, [(ORIG, payload), (RESP, payload)])
    assert not result.confirmed and result.services == []
    assert [v["failure_reason"] for v in result.violations] == [reason]
    assert "quic" not in result.logs and "ssl" not in result.logs


def test_unknown_version_is_a_violation_with_zeeks_row():
    first, rest = long_header(1, "initial", CLIENT_DCID, CLIENT_SCID)
    packet = bytes([first]) + b"\x0a\x1a\x2a\x3a" + rest[4:] + bytes(1100)
    result = run(quic.Quic, [(ORIG, packet)])
    assert [v["failure_reason"] for v in result.violations] == \
        ["unhandled QUIC version 0xa1a2a3a"]
    assert (row(result)["version"], row(result)["history"]) == ("unknown-a1a2a3a", "U")


@pytest.mark.parametrize("offered", [True, False], ids=["grease_quic_bit", "no_grease"])
def test_server_initial_with_the_fixed_bit_cleared(offered):
    """RFC 9287: a client offering grease_quic_bit (transport parameter
    0x2ab2, empty) lets the server clear the fixed bit, in its first Initial
    already (ngtcp2 does, at random).  Then the ServerHello is read; without
    the offer the packet is discarded, as Zeek discards it."""
    params = b"\x04\x04\x80\x10\x00\x00" + (b"\x80\x00\x2a\xb2\x00" if offered else b"")
    client = initial(ORIG, CLIENT_DCID, CLIENT_DCID, CLIENT_SCID,
                     crypto_frame(0, client_hello(transport=params)))
    first, rest = long_header(1, "initial", CLIENT_SCID, SERVER_SCID)
    keys = quic.initial_keys(1, CLIENT_DCID)[1]
    greased = protect(keys, first & ~0x40, rest, 0, crypto_frame(0, server_hello()))
    assert not greased[0] & 0x40
    result = run(quic.Quic, [(ORIG, client), (RESP, greased)])
    assert result.of("weird") == []
    ssl = result.logs["ssl"][0]
    if offered:
        assert row(result)["history"] == "ISis"
        assert (ssl["ssl_history"], ssl["cipher"]) == ("Cs", "TLS_AES_128_GCM_SHA256")
    else:
        assert row(result)["history"] == "ISx"
        assert (ssl["ssl_history"], ssl.get("cipher")) == ("C", None)


def test_malformed_transport_parameters_are_a_weird():
    client = initial(ORIG, CLIENT_DCID, CLIENT_DCID, CLIENT_SCID,
                     crypto_frame(0, client_hello(transport=b"\x04\x09\x80")))
    result = run(quic.Quic, [(ORIG, client)])
    assert names(result) == ["QUIC_malformed_transport_parameters"]
    assert row(result)["server_name"] == "quic.example"


def test_mutated_frames_and_hellos_inside_valid_protection_never_raise():
    """Decrypted but broken content (bytes changed, cut, inserted in CRYPTO,
    ACK, CONNECTION_CLOSE frames and in the hellos) ends as weirds, never as
    an exception in the analyser."""
    import random
    rnd = random.Random(11)
    payloads = [crypto_frame(0, client_hello(psk=True, transport=b"\x80\x00\x2a\xb2\x00")),
                b"\x02\x05\x01\x00\x00" + crypto_frame(0, client_hello()),
                b"\x1c\x0a\x00\x03bye", SERVER_PAYLOAD]
    weirds = set()
    for _ in range(400):
        p = bytearray(rnd.choice(payloads))
        for _ in range(rnd.randint(1, 4)):
            op = rnd.random()
            if op < 0.5 and p:
                p[rnd.randrange(len(p))] = rnd.randrange(256)
            elif op < 0.75:
                p = p[:rnd.randint(0, len(p))]
            else:
                at = rnd.randint(0, len(p))
                p[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        p += bytes(max(0, 4 - len(p)))
        client = initial(ORIG, CLIENT_DCID, CLIENT_DCID, CLIENT_SCID, bytes(p))
        server = initial(RESP, CLIENT_DCID, CLIENT_SCID, SERVER_SCID, bytes(p), pad=False)
        result = run(quic.Quic, [(ORIG, client), (RESP, server)])
        assert result.errors == [], result.errors
        weirds.update(names(result))
    assert {"QUIC_malformed_frame", "QUIC_malformed_hello"} <= weirds


def test_large_client_hello_in_fragments_tail_first():
    """A ClientHello over 2000 bytes (post-quantum key shares make them so)
    whose last fragment comes first, in the same packet: still read."""
    hello = client_hello(server_name="big.example", transport=bytes(3000))
    assert len(hello) > 3000
    frames = crypto_frame(2500, hello[2500:]) + crypto_frame(0, hello[:1200])
    first = initial(ORIG, CLIENT_DCID, CLIENT_DCID, CLIENT_SCID, frames, pad=False)
    second = initial(ORIG, CLIENT_DCID, CLIENT_DCID, CLIENT_SCID,
                     crypto_frame(1200, hello[1200:2500]), number=1, pad=False)
    result = run(quic.Quic, [(ORIG, first), (ORIG, second)])
    assert row(result)["server_name"] == "big.example"
    assert row(result)["history"] == "IIS"
