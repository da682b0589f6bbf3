"""Known vectors from WeChat Pay API v3's documentation: the exact bytes that are signed.

The signatures themselves need WeChat's keys; what the documentation pins down, and what these
check, is the message layout each side signs (签名生成 / 签名验证 / 小程序调起支付), the
Authorization header format, and the AEAD_AES_256_GCM decryption rule (ciphertext = ct ‖ 16-byte
tag, key = the 32-character APIv3 key, nonce = the 12-character ASCII nonce). The independent
implementation (wechatpayv3) in test_wechat_notifications/test_wechat_pay cross-checks the rest.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wechat import crypto


def test_the_request_signing_message_of_the_documentation():
    # 签名生成, example: GET https://api.mch.weixin.qq.com/v3/certificates
    message = crypto.request_message("GET", "/v3/certificates", "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242", b"")
    assert message == b"GET\n/v3/certificates\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n"


def test_a_post_body_is_signed_byte_for_byte_after_the_headers():
    body = '{"appid":"wxd678efh567hg6787","mchid":"1230000109","description":"Image形象店-深圳腾大-QQ公仔"}'
    message = crypto.request_message("post", "/v3/pay/transactions/jsapi", "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242", body)
    assert message == b"POST\n/v3/pay/transactions/jsapi\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n" + body.encode() + b"\n"


def test_the_response_and_notification_verification_message():
    # 签名验证: 应答时间戳\n应答随机串\n应答报文主体\n
    assert crypto.response_message("1554209980", "c5ac7061fccab6bf3e254dcf98995b8c", '{"data":[]}') == (
        b"1554209980\nc5ac7061fccab6bf3e254dcf98995b8c\n" + b'{"data":[]}' + b"\n"
    )


def test_the_authorization_header_of_the_documentation():
    header = crypto.authorization_header(
        "1900009191", "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C", "593BEC0C930BF1AFEB40B4A08C8FB242", "1554208460", "uOVRnA4qG..."
    )
    assert header == (
        'WECHATPAY2-SHA256-RSA2048 mchid="1900009191",nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",'
        'signature="uOVRnA4qG...",timestamp="1554208460",serial_no="1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C"'
    )
    assert crypto.parse_authorization(header)["serial_no"] == "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C"


def test_the_mini_program_pay_sign_message_is_the_documented_one(monkeypatch):
    # 小程序调起支付 paySign: appId\ntimeStamp\nnonceStr\npackage\n, signed with the merchant key
    from types import SimpleNamespace

    from wechat.pay import PayClient

    signed = []
    monkeypatch.setattr(crypto, "rsa_sign", lambda pem, message: signed.append(message) or "SIG")
    monkeypatch.setattr(crypto, "nonce", lambda n=32: "5K8264ILTKCH16CQ2502SI8ZNMTM67VS")
    client = PayClient.__new__(PayClient)
    client.cfg = SimpleNamespace(private_key_pem="unused")
    client._clock = lambda: 1414561699
    params = client.request_payment_params("wx8888888888888888", "wx201410272009395522657a690389285100")
    assert signed == ["wx8888888888888888\n1414561699\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\nprepay_id=wx201410272009395522657a690389285100\n"]
    assert params == {"timeStamp": "1414561699", "nonceStr": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
                      "package": "prepay_id=wx201410272009395522657a690389285100", "signType": "RSA", "paySign": "SIG"}


def test_aead_aes_256_gcm_decryption_follows_the_documented_layout():
    key, nonce, aad = "0123456789abcdef0123456789abcdef", "fdasflkja484", "transaction"
    plaintext = '{"out_trade_no":"1217752501201407033233368018","trade_state":"SUCCESS"}'.encode()
    sealed = AESGCM(key.encode()).encrypt(nonce.encode(), plaintext, aad.encode())  # ct ‖ tag
    assert len(sealed) == len(plaintext) + 16
    ciphertext = base64.b64encode(sealed).decode()
    assert crypto.aes_gcm_decrypt(key, nonce, ciphertext, aad) == plaintext
    assert crypto.aes_gcm_encrypt(key, nonce, plaintext, aad) == ciphertext
